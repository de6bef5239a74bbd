"""Device mesh, logical-axis sharding and multi-host helpers (STYLE: Sharding).

mesh.py       `config.mesh` -> `jax.sharding.Mesh` (axes data, fsdp, tensor; -1 = fill)
sharding.py   logical axis names + `config.mesh.rules` -> `NamedSharding`s, with replication
              of dims the mesh axes do not divide; `constrain_leading` pins activations'
              batch dim inside layers so FSDP gathers weights, not activations
hlo.py        a compiled step's collectives and their per-device shapes, from the HLO text
multihost.py  decisions every process must agree on (preemption)

The lowest layer: nothing here imports another stunet package (the AOT fit check, which
builds training steps, is a driver: `stunet/apps/aot.py`).
"""
