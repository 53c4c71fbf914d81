"""Writers for Calico v1 model objects in etcd (paths and JSON per the datastore contract).
Tests and benchmarks use these instead of hand-building keys."""

from __future__ import annotations

import json
from typing import Any, Sequence

import etcd

from felix.model import keys


class Datastore:
    def __init__(self, client: etcd.Client) -> None:
        self.client = client

    def set(self, path: str, value: str, ttl: int | None = None) -> None:
        self.client.write(path, value, ttl=ttl)

    def delete(self, path: str, recursive: bool = False) -> None:
        try:
            self.client.delete(path, recursive=recursive, dir=recursive)
        except etcd.EtcdKeyNotFound:
            pass

    def get(self, path: str) -> str | None:
        try:
            return str(self.client.read(path).value)
        except etcd.EtcdKeyNotFound:
            return None

    def ready(self, value: bool = True) -> None:
        self.set(keys.ReadyKey().path, "true" if value else "false")

    def config(self, name: str, value: str, host: str | None = None) -> None:
        key = keys.HostConfigKey(host, name) if host else keys.GlobalConfigKey(name)
        self.set(key.path, value)

    def delete_config(self, name: str, host: str | None = None) -> None:
        key = keys.HostConfigKey(host, name) if host else keys.GlobalConfigKey(name)
        self.delete(key.path)

    def endpoint(self, host: str, workload: str, data: dict[str, Any] | str,
                 orchestrator: str = "k8s", endpoint: str = "eth0") -> keys.WorkloadEndpointKey:
        key = keys.WorkloadEndpointKey(host, orchestrator, workload, endpoint)
        self.set(key.path, data if isinstance(data, str) else json.dumps(data))
        return key

    def delete_endpoint(self, host: str, workload: str, orchestrator: str = "k8s",
                        endpoint: str = "eth0") -> None:
        self.delete(keys.WorkloadEndpointKey(host, orchestrator, workload, endpoint).path)

    def host_endpoint(self, host: str, endpoint: str, data: dict[str, Any]) -> keys.HostEndpointKey:
        key = keys.HostEndpointKey(host, endpoint)
        self.set(key.path, json.dumps(data))
        return key

    def profile(self, profile_id: str, inbound: Sequence[dict[str, Any]] | None = None,
                outbound: Sequence[dict[str, Any]] | None = None,
                tags: Sequence[str] | None = None, labels: dict[str, str] | None = None) -> None:
        if inbound is not None or outbound is not None:
            self.set(keys.ProfileRulesKey(profile_id).path, json.dumps(
                {"inbound_rules": list(inbound or []), "outbound_rules": list(outbound or [])}))
        if tags is not None:
            self.set(keys.ProfileTagsKey(profile_id).path, json.dumps(list(tags)))
        if labels is not None:
            self.set(keys.ProfileLabelsKey(profile_id).path, json.dumps(labels))

    def delete_profile(self, profile_id: str) -> None:
        self.delete(f"{keys.ROOT}/policy/profile/{profile_id}", recursive=True)

    def tier(self, name: str, order: float | str | None = None) -> None:
        meta: dict[str, Any] = {} if order is None else {"order": order}
        self.set(keys.TierKey(name).path, json.dumps(meta))

    def policy(self, tier: str, policy_id: str, selector: str, order: float | None = None,
               inbound: Sequence[dict[str, Any]] = (), outbound: Sequence[dict[str, Any]] = ()) -> None:
        body: dict[str, Any] = {"selector": selector, "inbound_rules": list(inbound),
                                "outbound_rules": list(outbound)}
        if order is not None:
            body["order"] = order
        self.set(keys.PolicyKey(tier, policy_id).path, json.dumps(body))

    def delete_policy(self, tier: str, policy_id: str) -> None:
        self.delete(keys.PolicyKey(tier, policy_id).path)

    def pool(self, cidr: str, masquerade: bool = False, ipip: str | None = None,
             disabled: bool = False) -> None:
        version = 6 if ":" in cidr else 4
        body: dict[str, Any] = {"cidr": cidr, "masquerade": masquerade, "disabled": disabled}
        if ipip:
            body["ipip"] = ipip
        self.set(keys.PoolKey(version, cidr).path, json.dumps(body))

    def host_ip(self, host: str, ip: str) -> None:
        self.set(keys.HostIPKey(host).path, ip)
