"""Reading the datastore: a syncer turns etcd into (key, value|None) updates plus a status."""

from felix.datastore.api import SyncerCallbacks, SyncerStats, SyncStatus, Syncer, Update
from felix.datastore.client import make_client, parse_endpoints
from felix.datastore.etcdv2_syncer import EtcdSyncer

__all__ = ["EtcdSyncer", "Syncer", "SyncerCallbacks", "SyncerStats", "SyncStatus", "Update",
           "make_client", "parse_endpoints"]
