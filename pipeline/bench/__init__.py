"""The throughput benchmark (`pageray bench`, benchmarks/bench_extract.py): the model-card
baseline against pageray's extractor on the same pages and model (`harness`), with the timed
runs (`runs`), models (`models`), pages (`pages`) and the FLOP floor (`flops`). Never imported
by a run."""
