"""The local web app (`vdmkit serve`: generate, gallery, side-by-side human evaluation, results) and
`vdmkit human-eval create`. It sits on top of pipelines/ and nothing in vdmkit imports it but the CLI.

- ratings.py: win rates, Bradley-Terry, Elo, bootstrap intervals (numpy only)
- store.py: the SQLite vote store (WAL, parameterised SQL)
- study.py: a human-evaluation study on disk (pairs of pre-generated videos) and how one is made
- models.py: the models on offer (runs under --runs, and the default model)
- jobs.py: the generation queue (one job at a time, progress, position)
- server.py: the HTTP API and pages (FastAPI; the pages are plain HTML/JS in static/)
- cli.py: `vdmkit serve` and `vdmkit human-eval create`
"""
