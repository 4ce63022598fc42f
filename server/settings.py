"""Every setting the service reads, from `TELEMED_*` variables or an optional `.env` file.

One object, built once at start-up and passed down, so tests can run several differently configured
instances in one process and nothing reads the environment behind the settings' back.
"""

from __future__ import annotations

import socket
from enum import StrEnum
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Environment(StrEnum):
    development = "development"
    test = "test"
    production = "production"


class Settings(BaseSettings):
    """Configuration of one node; `.env.example` documents each field."""

    model_config = SettingsConfigDict(
        env_prefix="TELEMED_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    env: Environment = Environment.development
    data_dir: Path = Path("var")
    database_url: str | None = None
    broker_url: str | None = None
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    public_url: str = "http://127.0.0.1:8080"

    # Keys: from here in production; generated into `<data_dir>/keys` (0600) otherwise.
    jwt_private_key: SecretStr | None = None
    jwt_previous_public_keys: list[str] = Field(default_factory=list)
    master_key: SecretStr | None = None
    # Retired master keys (base64, 32 bytes each) that still unwrap recordings' data keys until
    # `python -m server recordings rewrap` has moved them all under `master_key` (docs/retention.md).
    master_previous_keys: list[SecretStr] = Field(default_factory=list)
    audit_key: SecretStr | None = None

    jwt_issuer: str = "telemed"
    jwt_audience: str = "telemed-api"
    access_token_ttl_seconds: int = Field(default=900, ge=30, le=3600)
    refresh_token_ttl_days: int = Field(default=30, ge=1, le=365)
    refresh_race_seconds: int = Field(default=10, ge=0, le=60)

    # argon2id cost; raising it makes every older hash upgrade at the owner's next login.
    argon2_time_cost: int = Field(default=3, ge=1)
    argon2_memory_kib: int = Field(default=65536, ge=8)
    argon2_parallelism: int = Field(default=4, ge=1)

    login_attempts_per_account: int = Field(default=5, ge=1)
    login_attempts_per_ip: int = Field(default=30, ge=1)
    login_window_seconds: int = Field(default=900, ge=1)
    registrations_per_ip_per_hour: int = Field(default=10, ge=1)
    rate_limit_storage_url: str = "async+memory://"

    admin_mfa_required: bool = True
    default_locale: str = "ru"
    max_request_bytes: int = Field(default=1_048_576, ge=1024)
    trust_forwarded_headers: bool = False

    # Scheduling
    booking_weeks_ahead: int = Field(default=4, ge=1, le=26)
    booking_cutoff_minutes: int = Field(default=120, ge=0)  # cancel or reschedule up to this long before
    checkin_opens_minutes: int = Field(default=15, ge=0, le=120)
    no_show_grace_minutes: int = Field(default=15, ge=1, le=120)
    complaint_max_chars: int = Field(default=1000, ge=100, le=5000)
    clinic_name: str = "Telemed clinic"
    clinic_time_zone: str = "Europe/Moscow"  # IANA name: the date printed on the clinic's documents

    # Notifications: e-mail through SMTP, or (no host set) .eml files in <data_dir>/outbox for development
    smtp_host: str | None = None
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_starttls: bool = True
    smtp_tls: bool = False  # implicit TLS (port 465)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    mail_from: str = "Telemed clinic <no-reply@clinic.example>"
    # SMS through an HTTP webhook of your gateway, or (no URL set) files in <data_dir>/outbox
    sms_webhook_url: str | None = None
    sms_webhook_token: SecretStr | None = None

    # The call: joining, and the ICE servers browsers and the server's peers use (never a public default)
    join_opens_minutes: int = Field(default=15, ge=0, le=120)  # a participant may join this long before the start
    call_overrun_minutes: int = Field(default=30, ge=0, le=240)  # ... and until this long after the slot's end
    join_ticket_seconds: int = Field(default=30, ge=5, le=300)
    stun_urls: list[str] = Field(default_factory=list)  # e.g. ["stun:turn.clinic.example:3478"]
    turn_urls: list[str] = Field(default_factory=list)  # e.g. ["turn:turn.clinic.example:3478?transport=udp"]
    turn_secret: SecretStr | None = None  # coturn's static-auth-secret (use-auth-secret)
    turn_credential_ttl_seconds: int = Field(default=3600, ge=60, le=86_400)
    # The live call: who may open its WebSocket, the socket's limits, how long a dropped call waits for a return
    allowed_origins: list[str] = Field(default_factory=list)  # [] = the origin of public_url
    call_grace_seconds: int = Field(default=120, ge=1, le=3600)
    signaling_join_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    signaling_heartbeat_seconds: float = Field(default=20.0, ge=1, le=300)
    signaling_messages_per_second: float = Field(default=20.0, gt=0, le=1000)
    signaling_message_burst: int = Field(default=40, ge=1, le=10_000)
    signaling_max_bad_messages: int = Field(default=10, ge=1, le=1000)
    signaling_sockets_per_address: int = Field(default=20, ge=1, le=100_000)  # open at once, from one address
    # Media: where the calls' peers run, and how many calls this node takes (docs/media-workers.md)
    media_workers: int | None = Field(default=None, ge=0, le=64)  # None = one per core; 0 = in the web process
    media_max_calls: int = Field(default=12, ge=1, le=10_000)  # concurrent calls this node admits
    # Recordings (docs/recording.md): sealed segments in a local folder (default <data_dir>/recordings)
    recordings_dir: Path | None = None
    recording_segment_seconds: float = Field(default=10.0, ge=1.0, le=60.0)
    recording_patient_playback: bool = False  # patients may replay their own consultations' recordings
    recording_finalise_grace_seconds: float = Field(default=30.0, ge=0, le=3600)  # a worker may still be flushing
    # An S3-compatible bucket instead of the folder (which then only spools the segments being written)
    recordings_s3_bucket: str | None = None
    recordings_s3_prefix: str = ""
    recordings_s3_endpoint_url: str | None = None  # None: AWS; otherwise MinIO, Ceph RGW, Yandex Object Storage...
    recordings_s3_region: str | None = None
    recordings_s3_access_key_id: str | None = None
    recordings_s3_secret_access_key: SecretStr | None = None
    node_id: str | None = None  # names this web node's recordings (recovery after a crash); default: the host

    # Retention per data class (docs/retention.md); 0 = keep forever. Medical records are kept for decades.
    # Recordings past it (not on legal hold) are crypto-erased by the daily `purge_recordings` task.
    retention_recording_days: int = Field(default=1825, ge=0)  # 5 years from finalisation
    # Protocols and consents: recorded for the operator and the docs; nothing purges them yet.
    retention_protocol_years: int = Field(default=25, ge=0)
    retention_consent_years: int = Field(default=25, ge=0)

    # Consent: which documents a consultation needs, how they are signed, whom the clinic trusts
    recording_enabled: bool = True  # the clinic records its consultations
    recording_required: bool = True  # no recording consent, no consultation (false: an unrecorded one)
    consent_validity_days: int = Field(default=0, ge=0)  # 0: a consent holds until withdrawn
    consent_required_level: Literal["simple", "enhanced_unqualified", "enhanced_qualified"] = "simple"
    consent_otp_ttl_seconds: int = Field(default=600, ge=60, le=3600)
    consent_otp_attempts: int = Field(default=5, ge=1, le=10)
    consent_otp_per_hour: int = Field(default=5, ge=1, le=100)  # codes a patient may ask for per document
    consent_trust_anchors: list[Path] = Field(default_factory=list)  # PEM/DER files of trusted root CAs
    consent_intermediates: list[Path] = Field(default_factory=list)
    consent_crls: list[Path] = Field(default_factory=list)
    consent_qualified_policy_oids: list[str] = Field(default_factory=list)
    consent_subject_match: Literal["email", "snils"] = "email"  # how a certificate names the patient
    consent_signature_max_bytes: int = Field(default=262_144, ge=1024)
    consent_scan_max_bytes: int = Field(default=8_388_608, ge=65_536)
    consent_font: Path | None = None  # a TTF with Cyrillic; DejaVu Sans by default
    seal_key: SecretStr | None = None  # Ed25519 PEM that seals consent records; generated in keys/ if unset
    seal_previous_public_keys: list[str] = Field(default_factory=list)  # retired seal keys, still verifying
    # QA audit (docs/qa.md): the sampling draw's secret (generated in keys/ if unset) and rate
    qa_secret: SecretStr | None = None
    qa_sampling_rate: float = Field(default=0.10, gt=0, le=1)
    qa_min_call_seconds: int = Field(default=180, ge=0)  # a shorter call is sampled
    qa_first_consultations: int = Field(default=5, ge=0)  # a physician's first N are all sampled
    qa_low_rating: int = Field(default=2, ge=0, le=5)  # a patient's rating at or below this is sampled
    qa_review_working_days: int = Field(default=5, ge=1, le=60)  # a review is due this many working days on
    qa_separate_departments: bool = False  # keep experts off their own department's consultations

    log_format: str | None = None  # "json" or "console"; json in production by default
    log_level: str = "INFO"
    audit_checkpoint_interval_seconds: int = Field(default=300, ge=5)
    start_worker: bool = True

    @field_validator("database_url", "broker_url", "jwt_private_key", "master_key", "audit_key", "log_format",
                     "smtp_host", "smtp_username", "smtp_password", "sms_webhook_url", "sms_webhook_token",
                     "consent_font", "seal_key", "turn_secret", "media_workers", "recordings_dir", "node_id",
                     "recordings_s3_bucket", "recordings_s3_endpoint_url", "recordings_s3_region",
                     "recordings_s3_access_key_id", "recordings_s3_secret_access_key", "qa_secret",
                     mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        """`KEY=` in a .env (as in .env.example) means "not set", not "set to nothing"."""
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _production_keeps_admin_second_factor(self) -> Settings:
        if self.is_production and not self.admin_mfa_required:
            raise ValueError("TELEMED_ADMIN_MFA_REQUIRED cannot be turned off in production")
        return self

    @field_validator("clinic_time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}; use an IANA name such as Europe/Moscow") from None
        return value

    @field_validator("default_locale")
    @classmethod
    def _known_locale(cls, value: str) -> str:
        if value not in ("ru", "en"):
            raise ValueError("default_locale must be 'ru' or 'en'")
        return value

    @property
    def is_production(self) -> bool:
        return self.env is Environment.production

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir / 'telemed.sqlite3'}"

    @property
    def resolved_broker_url(self) -> str:
        return self.broker_url or f"sqla+sqlite:///{self.data_dir / 'broker.sqlite3'}"

    def ensure_data_dir(self) -> Path:
        """Create the data folder private to this user: it holds keys, the SQLite database and recordings."""
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.data_dir.chmod(0o700)
        return self.data_dir

    @property
    def outbox_dir(self) -> Path:
        return self.data_dir / "outbox"

    @property
    def resolved_recordings_dir(self) -> Path:
        return self.recordings_dir or self.data_dir / "recordings"

    @property
    def resolved_node_id(self) -> str:
        return self.node_id or socket.gethostname()[:64]

    @property
    def keys_dir(self) -> Path:
        return self.data_dir / "keys"

    @property
    def checkpoints_dir(self) -> Path:
        return self.data_dir / "audit-checkpoints"

    @property
    def resolved_log_format(self) -> str:
        return self.log_format or ("json" if self.is_production else "console")
