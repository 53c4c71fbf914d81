"""``make demo`` / ``python -m demo``: felix in a sandbox. A throw-away "host" network
namespace with its own etcd, four workloads on cali* veths, profiles and a tiered policy; a
live connectivity matrix before and after a policy change, with convergence times; then where
to look (status keys, metrics, health). Cleans up after itself unless ``--keep``;
``--cleanup`` removes a kept (or crashed) demo."""
