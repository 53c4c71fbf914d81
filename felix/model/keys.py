"""Typed identities of the datastore objects felix reads (paths per the datastore contract).

Parsing a raw etcd path into one of these lives in felix/model/parse.py; each key knows how to
print its own path so status writers and tests never hand-build paths.
"""

from __future__ import annotations

from dataclasses import dataclass

ROOT = "/calico/v1"
FELIX_STATUS_ROOT = "/calico/felix/v1"


@dataclass(frozen=True, order=True)
class ReadyKey:
    @property
    def path(self) -> str:
        return f"{ROOT}/Ready"


@dataclass(frozen=True, order=True)
class GlobalConfigKey:
    name: str

    @property
    def path(self) -> str:
        return f"{ROOT}/config/{self.name}"


@dataclass(frozen=True, order=True)
class HostConfigKey:
    hostname: str
    name: str

    @property
    def path(self) -> str:
        return f"{ROOT}/host/{self.hostname}/config/{self.name}"


@dataclass(frozen=True, order=True)
class HostIPKey:
    hostname: str

    @property
    def path(self) -> str:
        return f"{ROOT}/host/{self.hostname}/bird_ip"


@dataclass(frozen=True, order=True)
class WorkloadEndpointKey:
    hostname: str
    orchestrator: str
    workload: str
    endpoint: str

    @property
    def path(self) -> str:
        return (f"{ROOT}/host/{self.hostname}/workload/{self.orchestrator}/"
                f"{self.workload}/endpoint/{self.endpoint}")

    @property
    def status_path(self) -> str:
        return (f"{FELIX_STATUS_ROOT}/host/{self.hostname}/workload/{self.orchestrator}/"
                f"{self.workload}/endpoint/{self.endpoint}")


@dataclass(frozen=True, order=True)
class HostEndpointKey:
    hostname: str
    endpoint: str

    @property
    def path(self) -> str:
        return f"{ROOT}/host/{self.hostname}/endpoint/{self.endpoint}"

    @property
    def status_path(self) -> str:
        return f"{FELIX_STATUS_ROOT}/host/{self.hostname}/endpoint/{self.endpoint}"


EndpointKey = WorkloadEndpointKey | HostEndpointKey


@dataclass(frozen=True, order=True)
class ProfileRulesKey:
    profile_id: str

    @property
    def path(self) -> str:
        return f"{ROOT}/policy/profile/{self.profile_id}/rules"


@dataclass(frozen=True, order=True)
class ProfileTagsKey:
    profile_id: str

    @property
    def path(self) -> str:
        return f"{ROOT}/policy/profile/{self.profile_id}/tags"


@dataclass(frozen=True, order=True)
class ProfileLabelsKey:
    profile_id: str

    @property
    def path(self) -> str:
        return f"{ROOT}/policy/profile/{self.profile_id}/labels"


@dataclass(frozen=True, order=True)
class TierKey:
    tier: str

    @property
    def path(self) -> str:
        return f"{ROOT}/policy/tier/{self.tier}/metadata"


@dataclass(frozen=True, order=True)
class PolicyKey:
    tier: str
    policy_id: str

    @property
    def path(self) -> str:
        return f"{ROOT}/policy/tier/{self.tier}/policy/{self.policy_id}"


@dataclass(frozen=True, order=True)
class PoolKey:
    ip_version: int
    cidr: str  # canonical CIDR with "/" (the path uses "-")

    @property
    def path(self) -> str:
        return f"{ROOT}/ipam/v{self.ip_version}/pool/{self.cidr.replace('/', '-')}"


ModelKey = (ReadyKey | GlobalConfigKey | HostConfigKey | HostIPKey | WorkloadEndpointKey
            | HostEndpointKey | ProfileRulesKey | ProfileTagsKey | ProfileLabelsKey | TierKey
            | PolicyKey | PoolKey)
