"""The daemon runtime: stage supervisor, leader lock, scheduler jobs, signals, live config reload, status."""
