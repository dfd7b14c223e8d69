"""Settings from environment variables (prefix ``SELFHEAL_``) with sensible embedded defaults."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from engine.errors import ConfigError


class Settings(BaseSettings):
    """Everything configurable. Each field is read from ``SELFHEAL_<NAME>`` (e.g. SELFHEAL_DATA_DIR)."""

    model_config = SettingsConfigDict(env_prefix="SELFHEAL_", extra="ignore", frozen=True)

    data_dir: Path = Field(default=Path.home() / ".selfheal", description="where the SQLite store and files live")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; default SQLite in data_dir")
    fleet_size: int = Field(default=12, ge=1, le=5000, description="pipelines in the embedded twin")
    seed: int = Field(default=42, ge=0, le=2**63 - 1, description="seed of the embedded twin")
    sim_speed: float = Field(default=1.0, gt=0, le=1440, description="simulated minutes per real second")
    tick_seconds: float = Field(default=1.0, gt=0, le=3600, description="real seconds between ticks")
    backfill_minutes: int = Field(default=360, ge=0, le=60 * 24 * 14,
                                  description="history simulated at start when the store is empty")
    live: bool = Field(default=True, description="run the embedded twin in a background thread")
    twin: bool = Field(default=True, description="host the simulated fleet (the staging twin); false: the console "
                                                 "only shows what the store holds (e.g. `selfheal watch`'s pipelines)")
    slo_target: float = Field(default=0.99, gt=0, le=1, description="SLO attainment target")
    refresh_seconds: float = Field(default=2.0, ge=0.5, le=600, description="console live refresh period")
    require_sign_in: bool = Field(default=False,
                                  description="refuse open mode: with no users configured the console signs no one in")

    agent_policy: str = Field(default="auto", pattern="^(auto|qlearning|rules|manual|none)$",
                              description="the live decision policy: auto (qlearning once trained, else rules), "
                                          "qlearning, rules, manual or none (detection only)")
    policy_file: Path | None = Field(default=None, description="execution policy (TOML); default data_dir/policy.toml,"
                                                                " the built-in low-risk policy while it does not exist")
    embedded_worker: bool = Field(default=True, description="execute approved actions inside the console/agent "
                                                            "process (false: only `selfheal worker` processes do)")
    worker_lease_seconds: float = Field(default=30.0, gt=0, le=3600, description="how long a worker's hold on a "
                                        "pipeline and its run lasts without renewal")
    run_timeout_seconds: float = Field(default=900.0, gt=0, le=86400, description="an action run's deadline")

    @cached_property
    def store_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir.expanduser() / 'selfheal.db'}"

    @cached_property
    def policy_path(self) -> Path:
        return (self.policy_file or self.data_dir / "policy.toml").expanduser()


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, with explicit overrides; invalid values raise ConfigError."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as e:
        problems = "; ".join(f"SELFHEAL_{'.'.join(map(str, x['loc'])).upper()}: {x['msg']}" for x in e.errors())
        raise ConfigError(f"invalid settings: {problems}") from e
