"""Interop: pretrained weights of other libraries (diffusers pipeline folders: ModelScope T2V, SD VAEs, CLIP)
mapped into vdmkit's own modules, key by key; diffusers is needed only in tests, as the reference."""
