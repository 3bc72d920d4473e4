"""The composition root: the one place that builds stages and the use cases every entry point calls.

`cdc-repair run` and the demo build the daemon with `app.daemon.build_app`; the other commands call one use
case each (`app.tail`, `app.validate`, `app.repair`, `app.status`, `app.diff`) and only parse arguments and
map exit codes around it. The daemon's scheduler jobs run the same scans the validate use case runs. Each use
case is its own module, imported when used, so `cdc-repair status` does not load the capture stack.
"""
