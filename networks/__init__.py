"""Network definitions as data: a JSON layer spec, validated against an allowlist.

`spec` and `builtin` are pure Python (the web process validates and summarises without torch);
`torch_build` turns a validated spec into a `torch.nn.Module` and is imported by workers only.
"""
