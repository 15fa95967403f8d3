"""The line monitor: light probes, throughput tests, outage detection and localization.

Pure decisions (is the line down, and where? may a test run now? which grade?) live in
`outage`, `schedule`, `gate` and `throughput` as plain functions over plain data; the
network (`probes`, `iperf`), the database (`store`) and the loop (`service`) sit at the
edges.
"""
