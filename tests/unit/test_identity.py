"""Users, tokens and roles: tokens kept only as hashes, expiry, revocation, disabled users."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
import sqlalchemy as sa

from conveyor.core.clock import utcnow
from conveyor.core.errors import (
    AlreadyExistsError,
    ConflictError,
    InvalidArgumentError,
    NotFoundError,
    UnauthenticatedError,
)
from conveyor.store.identity import IdentityStore
from conveyor.store.metadata.schema import tokens, users
from conveyor.store.metadata.store import MetadataStore
from conveyor.store.principal import Principal, acting, require_role


@pytest.fixture
def identity(tmp_path: Path) -> IdentityStore:
    store = MetadataStore(f"sqlite:///{tmp_path / 'c.db'}")
    store.open()
    yield IdentityStore(store)
    store.close()


def test_a_token_is_stored_only_as_its_sha256(identity: IdentityStore) -> None:
    identity.add_user("ana")
    info, secret = identity.create_token("ana", "laptop")
    assert secret.startswith("cvt_")
    assert len(secret) > 40
    with identity.metadata.read() as conn:
        row = conn.execute(sa.select(tokens)).one()
    stored = [str(v) for v in row._mapping.values() if v is not None]
    assert secret not in stored
    assert row.digest == hashlib.sha256(secret.encode()).hexdigest()
    assert info.prefix == secret[: len(info.prefix)]
    assert len(info.prefix) < 12
    assert identity.authenticate(secret).name == "ana"


def test_two_tokens_differ_and_each_names_its_user(identity: IdentityStore) -> None:
    identity.add_user("ana")
    identity.add_user("bo")
    _, a = identity.create_token("ana")
    _, b = identity.create_token("bo")
    assert a != b
    assert (identity.authenticate(a).name, identity.authenticate(b).name) == ("ana", "bo")


def test_revoked_expired_and_unknown_tokens_are_refused(identity: IdentityStore) -> None:
    identity.add_user("ana")
    revoked, secret = identity.create_token("ana")
    identity.revoke_token(revoked.id)
    with pytest.raises(UnauthenticatedError, match="revoked"):
        identity.authenticate(secret)
    expiring, secret2 = identity.create_token("ana", expires_in=timedelta(hours=1))
    assert identity.authenticate(secret2).name == "ana"
    with identity.metadata.transaction() as uow:
        uow.conn.execute(
            tokens.update()
            .where(tokens.c.id == expiring.id)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    with pytest.raises(UnauthenticatedError, match="expired"):
        identity.authenticate(secret2)
    with pytest.raises(UnauthenticatedError):
        identity.authenticate("cvt_" + "x" * 43)
    with pytest.raises(UnauthenticatedError, match="not a Conveyor token"):
        identity.authenticate("Basic abc")


def made_with_ids(monkeypatch: pytest.MonkeyPatch, *chosen: str) -> None:
    """Make the next tokens with these ids (real ones made close in time share a prefix)."""
    queue = iter(chosen)
    monkeypatch.setattr("conveyor.store.identity.ids", SimpleNamespace(new_id=lambda: next(queue)))


A1, A2, B = "01JAAAAAAA0000000000000001", "01JAAAAAAA0000000000000002", "01JBBBBBBB0000000000000001"


def test_a_token_is_found_by_its_id_or_a_unique_start_of_it(
    identity: IdentityStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    identity.add_user("ana")
    made_with_ids(monkeypatch, A1, A2, B)
    for _ in range(3):
        identity.create_token("ana")
    assert identity.find_token(A1).id == A1
    assert identity.find_token("01JBBB").id == B
    assert identity.find_token("01jbbbbbbb").id == B  # ids are upper case; either will do
    assert identity.find_token(A2[:-1] + "1").id == A1  # a whole id wins over a longer one


def test_an_ambiguous_start_of_an_id_lists_the_tokens_and_no_secret(
    identity: IdentityStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    identity.add_user("ana")
    made_with_ids(monkeypatch, A1, A2, B)
    made = [identity.create_token("ana", name) for name in ("laptop", "ci", "other")]
    with pytest.raises(InvalidArgumentError, match="is the start of 2 token ids") as caught:
        identity.find_token("01JAAA")
    message = str(caught.value)
    assert f"{A1} (ana, 'laptop')" in message
    assert f"{A2} (ana, 'ci')" in message
    assert B not in message
    for info, secret in made:
        assert secret not in message
        assert info.prefix not in message
    assert [t.revoked_at for t in identity.list_tokens("ana")] == [None] * 3


def test_a_start_shared_with_revoked_tokens_names_the_working_one(
    identity: IdentityStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    identity.add_user("ana")
    made_with_ids(monkeypatch, A1, A2)
    old, _ = identity.create_token("ana", "old laptop")
    identity.create_token("ana", "laptop")
    identity.revoke_token(old.id)
    assert identity.find_token("01JAAA").id == A2
    identity.revoke_token(A2)
    with pytest.raises(InvalidArgumentError, match="is the start of 2 token ids"):
        identity.find_token("01JAAA")  # both revoked: which one is meant cannot be told


def test_a_start_that_is_short_or_matches_nothing_is_refused(
    identity: IdentityStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    identity.add_user("ana")
    made_with_ids(monkeypatch, A1)
    identity.create_token("ana")
    with pytest.raises(InvalidArgumentError, match="at least 6 characters; got '01JAA'"):
        identity.find_token("01JAA")
    with pytest.raises(NotFoundError, match="No token id starts with '01JCCC'"):
        identity.find_token("01JCCC")
    with pytest.raises(NotFoundError):  # LIKE's wildcards are matched as themselves
        identity.find_token("01JAA%")
    with pytest.raises(NotFoundError):  # another user's token is not looked at
        identity.find_token(A1, user="bo")


def test_disabling_a_user_stops_their_tokens_at_once(identity: IdentityStore) -> None:
    identity.add_user("ana")
    _, secret = identity.create_token("ana")
    identity.set_disabled("ana", True)
    with pytest.raises(UnauthenticatedError, match="disabled"):
        identity.authenticate(secret)
    identity.set_disabled("ana", False)
    assert identity.authenticate(secret).name == "ana"


def test_the_last_enabled_administrator_cannot_be_disabled(identity: IdentityStore) -> None:
    identity.add_user("root", admin=True)
    with pytest.raises(ConflictError, match="last enabled server administrator"):
        identity.set_disabled("root", True)
    identity.add_user("second", admin=True)
    assert identity.set_disabled("root", True).disabled
    with pytest.raises(ConflictError, match="last enabled"):
        identity.set_disabled("second", True)


def test_what_a_started_run_acts_as_lapses_with_its_token_user_or_role(
    identity: IdentityStore,
) -> None:
    identity.add_user("ana")
    identity.grant("ana", "alpha", "editor")
    alpha = identity.metadata.get_project("alpha").id
    info, secret = identity.create_token("ana")
    started = identity.authenticate(secret)
    assert identity.lapsed(started, alpha) is None
    identity.grant("ana", "alpha", "viewer")
    assert "no longer holds the editor role" in str(identity.lapsed(started, alpha))
    identity.grant("ana", "alpha", "editor")
    identity.set_disabled("ana", True)
    assert "disabled" in str(identity.lapsed(started, alpha))
    identity.set_disabled("ana", False)
    identity.grant("ana", "alpha", "approver")
    approving = identity.authenticate(secret)
    identity.grant("ana", "alpha", "editor")  # still an editor, but no longer an approver
    assert "no longer approver" in str(identity.lapsed(approving, alpha))
    identity.revoke_token(info.id)
    assert "was revoked" in str(identity.lapsed(started, alpha))
    owner = identity.principal_for(started.user_id, alpha)  # a schedule's: no token
    assert (owner.token_id, owner.role_in(alpha), identity.lapsed(owner, alpha)) == (
        None,
        "editor",
        None,
    )


def test_roles_are_per_project_and_a_project_token_sees_only_its_project(
    identity: IdentityStore,
) -> None:
    identity.add_user("ana")
    identity.grant("ana", "alpha", "approver")
    identity.grant("ana", "beta", "viewer")
    alpha = identity.metadata.get_project("alpha").id
    beta = identity.metadata.get_project("beta").id
    _, anywhere = identity.create_token("ana")
    _, beta_only = identity.create_token("ana", project="beta")
    p = identity.authenticate(anywhere)
    assert (p.role_in(alpha), p.role_in(beta)) == ("approver", "viewer")
    assert p.can(alpha, "editor")
    assert not p.can(beta, "editor")
    scoped = identity.authenticate(beta_only)
    assert scoped.role_in(alpha) is None
    assert scoped.role_in(beta) == "viewer"
    identity.revoke_role("ana", "alpha")
    assert identity.authenticate(anywhere).role_in(alpha) is None


def test_a_token_for_a_project_that_does_not_exist_is_refused(identity: IdentityStore) -> None:
    identity.add_user("ana")
    with pytest.raises(NotFoundError):
        identity.create_token("ana", project="nowhere")


def test_bad_names_roles_and_duplicates_are_clear_errors(identity: IdentityStore) -> None:
    identity.add_user("ana")
    with pytest.raises(AlreadyExistsError):
        identity.add_user("ana")
    with pytest.raises(InvalidArgumentError, match="user name"):
        identity.add_user("a b")
    with pytest.raises(InvalidArgumentError, match="Unknown role 'owner'"):
        identity.grant("ana", "alpha", "owner")
    with pytest.raises(NotFoundError, match="No user called 'zed'"):
        identity.create_token("zed")


def test_bootstrap_creates_one_administrator_once(identity: IdentityStore) -> None:
    secret = identity.bootstrap("root")
    assert secret is not None
    principal = identity.authenticate(secret)
    assert principal.is_admin
    assert principal.name == "root"
    assert identity.bootstrap("root") is None
    assert [u.name for u in identity.list_users()] == ["root"]


def test_passwords_are_argon2_hashes_and_checked(identity: IdentityStore) -> None:
    identity.add_user("ana", password="correct horse")
    with identity.metadata.read() as conn:
        stored = conn.execute(sa.select(users.c.password_hash)).scalar_one()
    assert stored.startswith("$argon2id$")
    assert "correct horse" not in stored
    assert identity.check_password("ana", "correct horse").name == "ana"
    with pytest.raises(UnauthenticatedError):
        identity.check_password("ana", "wrong horse")
    with pytest.raises(UnauthenticatedError):
        identity.check_password("nobody", "correct horse")
    with pytest.raises(InvalidArgumentError, match="8 characters"):
        identity.set_password("ana", "short")


def test_identity_changes_are_audited(identity: IdentityStore) -> None:
    identity.add_user("ana")
    identity.grant("ana", "alpha", "editor")
    info, _ = identity.create_token("ana")
    identity.revoke_token(info.id)
    actions = [e.action for e in identity.metadata.audit_log(limit=20)]
    for action in ("user.create", "role.grant", "token.create", "token.revoke"):
        assert action in actions


def test_require_role_refuses_only_an_acting_principal_without_the_role() -> None:
    require_role("p1", "admin", "do anything")  # embedded use: nobody acting, nothing refused
    viewer = Principal(user_id="u", name="vi", roles={"p1": "viewer"})
    with acting(viewer, source="10.0.0.1"):
        require_role("p1", "viewer", "read")
        with pytest.raises(PermissionError, match="needs the editor role"):
            require_role("p1", "editor", "write runs")
