"""File IO: video files, checkpoints, atomic writes."""
