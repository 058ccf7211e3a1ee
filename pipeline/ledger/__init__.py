"""What makes runs exactly-once and incremental: the output folder is the record.

`folder` owns the output's layout (every path, the part-file name, the listing, the atomic
write); `commit` is the step that writes pages; `index` reads what is committed; `retry` says
which rows are final; `plan` decides what a run does; `compact` drops what a newer row replaced;
`records`, `heartbeat` and `status` keep and show each run's record."""
