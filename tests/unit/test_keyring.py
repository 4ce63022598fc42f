"""Keys: generated privately outside production, refused as generated in production, rotated safely."""

from __future__ import annotations

import stat
import time
import uuid
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from server.auth.tokens import InvalidToken, decode_access_token, issue_access_token
from server.keyring import (
    KeyConfigurationError,
    generate_key_settings,
    install_qa_secret,
    keep_retired_qa_secret,
    load_audit_key,
    load_key_material,
    load_qa_secret,
    load_qa_secrets,
    load_seal_keys,
    new_qa_secret,
    rotate_jwt_key,
)
from server.settings import Settings


def _settings(tmp_path: Path, **values: object) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path / "var", **values)  # type: ignore[call-arg, arg-type]


def test_keyring_generates_private_key_files_once(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    first = load_key_material(settings)
    audit_key = load_audit_key(settings)
    files = [p for p in (tmp_path / "var" / "keys").rglob("*") if p.is_file()]
    assert len(files) == 3
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE((tmp_path / "var").stat().st_mode) == 0o700
    again = load_key_material(settings)
    assert again.master_key == first.master_key
    assert again.jwt.signing_kid == first.jwt.signing_kid
    assert first.generated == {"TELEMED_JWT_PRIVATE_KEY", "TELEMED_MASTER_KEY"}
    assert load_audit_key(settings).public_key() == audit_key.public_key()


def test_keyring_production_refuses_generated_keys(tmp_path: Path) -> None:
    with pytest.raises(KeyConfigurationError, match="TELEMED_MASTER_KEY"):
        load_key_material(_settings(tmp_path, env="production"))
    with pytest.raises(KeyConfigurationError, match="TELEMED_AUDIT_KEY"):
        load_audit_key(_settings(tmp_path, env="production"))
    with pytest.raises(KeyConfigurationError, match="TELEMED_SEAL_KEY"):
        load_seal_keys(_settings(tmp_path, env="production"))
    assert not (tmp_path / "var" / "keys").exists()  # nothing generated on the way to refusing


def test_keyring_production_accepts_configured_keys(tmp_path: Path) -> None:
    configured = generate_key_settings()
    settings = _settings(tmp_path, env="production", jwt_private_key=configured["TELEMED_JWT_PRIVATE_KEY"],
                         master_key=configured["TELEMED_MASTER_KEY"], audit_key=configured["TELEMED_AUDIT_KEY"])
    material = load_key_material(settings)
    assert material.generated == frozenset()
    seal = load_seal_keys(_settings(tmp_path, env="production", seal_key=configured["TELEMED_SEAL_KEY"]))
    assert list(seal.verification_keys) == [seal.signing_kid]
    assert not (tmp_path / "var" / "keys").exists()


def test_seal_keys_are_generated_once_and_retired_ones_keep_verifying(tmp_path: Path) -> None:
    first = load_seal_keys(_settings(tmp_path))
    assert stat.S_IMODE((tmp_path / "var" / "keys" / "seal.pem").stat().st_mode) == 0o600
    assert load_seal_keys(_settings(tmp_path)).signing_kid == first.signing_kid
    retired = first.signing_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                          serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    rotated = load_seal_keys(_settings(tmp_path, seal_key=generate_key_settings()["TELEMED_SEAL_KEY"],
                                       seal_previous_public_keys=[retired]))
    assert rotated.signing_kid != first.signing_kid
    assert set(rotated.verification_keys) == {rotated.signing_kid, first.signing_kid}


def test_keyring_rejects_a_short_master_key(tmp_path: Path) -> None:
    with pytest.raises(KeyConfigurationError, match="32 bytes"):
        load_key_material(_settings(tmp_path, master_key="c2hvcnQ="))


def test_keyring_derived_keys_differ_by_purpose(tmp_path: Path) -> None:
    material = load_key_material(_settings(tmp_path))
    assert material.derive("a") != material.derive("b")
    assert material.derive("a") == material.derive("a")


def _token(keys: object, now: float) -> str:
    token, _ = issue_access_token(keys, user_id=uuid.uuid4(), session_id=uuid.uuid4(), role="patient",  # type: ignore[arg-type]
                                  amr=["pwd"], issuer="i", audience="a", ttl_seconds=900, now=now)
    return token


def test_keyring_rotation_keeps_old_tokens_valid_until_they_expire(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    now = time.time()
    before = load_key_material(settings, now=now - 600)  # the first key, made ten minutes ago
    old_token = _token(before.jwt, now - 600)
    rotate_jwt_key(settings.keys_dir, now=now - 60)  # rotated a minute ago
    after = load_key_material(settings, now=now)
    assert after.jwt.signing_kid != before.jwt.signing_kid
    decode_access_token(old_token, keys=after.jwt, issuer="i", audience="a", now=now)
    decode_access_token(_token(after.jwt, now), keys=after.jwt, issuer="i", audience="a", now=now)
    # Past the grace period (access TTL + a minute) the retired key is gone.
    much_later = now + settings.access_token_ttl_seconds + 120
    later = load_key_material(settings, now=much_later)
    assert before.jwt.signing_kid not in later.jwt.verification_keys
    with pytest.raises(InvalidToken, match="key id"):
        decode_access_token(old_token, keys=later.jwt, issuer="i", audience="a", now=much_later)
    assert len(list((settings.keys_dir / "jwt").glob("*.pem"))) == 1


def test_keyring_jwks_publishes_only_live_public_keys(tmp_path: Path) -> None:
    material = load_key_material(_settings(tmp_path))
    jwks = material.jwt.jwks(now=time.time())
    assert [k["kid"] for k in jwks["keys"]] == [material.jwt.signing_kid]
    assert set(jwks["keys"][0]) == {"kty", "crv", "x", "kid", "use", "alg"}  # no private part "d"


def test_the_qa_secret_is_generated_once_0600_or_configured_and_production_requires_it(tmp_path: Path) -> None:
    first = load_qa_secret(_settings(tmp_path))
    assert load_qa_secret(_settings(tmp_path)) == first  # kept, not regenerated
    path = tmp_path / "var" / "keys" / "qa-secret"
    assert path.stat().st_mode & 0o777 == 0o600
    configured = generate_key_settings()["TELEMED_QA_SECRET"]
    chosen = load_qa_secret(_settings(tmp_path, qa_secret=configured))
    assert chosen.key_id != first.key_id
    with pytest.raises(KeyConfigurationError, match="QA secret must be 16 or more bytes"):
        load_qa_secret(_settings(tmp_path, qa_secret="c2hvcnQ="))
    with pytest.raises(KeyConfigurationError, match="TELEMED_QA_SECRET"):
        load_qa_secret(_settings(tmp_path / "prod", env="production"))


def test_retired_qa_secrets_are_held_by_id_beside_the_current_one(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    old = load_qa_secret(settings)
    path = keep_retired_qa_secret(settings, old)
    assert path == tmp_path / "var" / "keys" / "qa-secrets" / old.key_id
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    new = new_qa_secret()
    assert install_qa_secret(settings, new, record=lambda: "recorded") == "recorded"
    held = load_qa_secrets(settings)
    assert held.current == new  # the file was replaced: the sampler now draws with the new one
    assert held.get(old.key_id) == old  # and the old one still replays its months
    assert held.by_id() == {old.key_id: old.key, new.key_id: new.key}
    assert held.get("0" * 16) is None
    assert repr(old.key) not in repr(held)  # never shown in a traceback or a log
    assert repr(old.key) not in repr(old)
    assert [p.name for p in (tmp_path / "var" / "keys").iterdir() if p.name.startswith(".")] == []


def test_a_rotation_that_is_not_recorded_leaves_the_current_qa_secret(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    before = load_qa_secret(settings)

    def refused() -> None:
        raise RuntimeError("the database refused the rotation")

    with pytest.raises(RuntimeError, match="refused"):
        install_qa_secret(settings, new_qa_secret(), record=refused)
    assert load_qa_secret(settings) == before
    assert [p.name for p in (tmp_path / "var" / "keys").iterdir() if p.name.startswith(".")] == []
    configured = _settings(tmp_path, qa_secret=generate_key_settings()["TELEMED_QA_SECRET"])
    with pytest.raises(KeyConfigurationError, match="TELEMED_QA_SECRET"):
        install_qa_secret(configured, new_qa_secret(), record=lambda: None)


def test_a_configured_qa_secret_keeps_retired_ones_from_files_and_names_a_bad_file(tmp_path: Path) -> None:
    settings = _settings(tmp_path, qa_secret=generate_key_settings()["TELEMED_QA_SECRET"])
    retired = new_qa_secret()
    keep_retired_qa_secret(settings, retired)
    held = load_qa_secrets(settings)
    assert held.current == load_qa_secret(settings)
    assert held.get(retired.key_id) == retired
    (tmp_path / "var" / "keys" / "qa-secrets" / "2025-old").write_text("not base64!\n")
    with pytest.raises(KeyConfigurationError, match="retired QA secret in 2025-old must be base64"):
        load_qa_secrets(settings)
