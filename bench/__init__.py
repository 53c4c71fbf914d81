"""Benchmarks: the real felix against a real etcd and kernel, compared with the kernel floor."""
