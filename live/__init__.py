"""Live updates of running jobs: the worker's wake-up (`wakeup`), one shared watcher per job per
web process (`watchers`) and the server-sent event stream that browsers and scripts read (`events`)."""
