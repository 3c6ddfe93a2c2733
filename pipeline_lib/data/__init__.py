"""Data tools: IDX files, Caffe `Datum` records, LMDB/LevelDB databases, downloads.

Modules: `idx` (MNIST's IDX files), `datum` (arrays <-> `caffe_pb2.Datum`),
`db` (LMDB/LevelDB readers and writers, behind `open_db`), `convert` (IDX pair -> database),
`download` (verified fetching from a list of sources), `mnist_sources`
(MNIST's files and where they come from). Command line: `python -m pipeline_lib.data`.
"""
