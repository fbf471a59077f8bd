"""Drivers of ACME's (made-up) instruments, for aimc-calib benches."""
