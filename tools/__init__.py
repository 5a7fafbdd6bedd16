"""Developer generators of the committed data (texture library, concept–class validity table).

Not part of the installed package: run them from the repository root, e.g.
`python tools/make_textures.py` or `python -m tools.make_validity`. They import `pipeline`; the
runtime never imports them.
"""
