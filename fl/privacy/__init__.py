"""Privacy attacks against what a server holds: one update, the secure sum, the DP sum."""
