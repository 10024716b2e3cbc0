"""What every training loop shares: progress events and stop requests, the loss, the optimiser, DDP."""
