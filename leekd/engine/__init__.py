"""What runs tasks: the ready queue, worker threads, the watchdog, the crash ledger."""
