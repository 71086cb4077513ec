"""Replaying a draft over a stream of audit records (``broker/policy/replay.py``)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from broker.evidence.claims import Tee
from broker.policy.replay import SAMPLES, Replay, claims_of_record

from .support import AMD_MILAN, NOW, claims_of, policy

LIFETIME = timedelta(minutes=5)
MINUTE = timedelta(minutes=1)


def draft(minimum_snp: int, limits: str = "") -> Any:
    admit = (
        f"  snp:\n    signer: {{origin: silicon-vendor}}\n    minimum_tcb: {{snp: {minimum_snp}}}\n"
    )
    return policy(admit, extra=limits)


def attest_body(token_id: str, snp: int, chip: str = "ab" * 64) -> dict[str, Any]:
    claims = claims_of(Tee.SNP, AMD_MILAN, reported_tcb={"snp": snp}, chip_id=chip)
    return {"token_id": token_id, "claims": claims.document()}


def release_body(token_id: str, policy_name: str = "test", reasons: Any = ()) -> dict[str, Any]:
    body: dict[str, Any] = {"token_id": token_id, "policy": {"name": policy_name}}
    if reasons:
        body["reasons"] = [{"rule": rule} for rule in reasons]
        body["error"] = {"type": "policy-denied", "detail": "..."}
    return body


class History:
    def __init__(self, replay: Replay) -> None:
        self.replay = replay
        self.at = NOW

    def attest(self, token_id: str, snp: int, **options: Any) -> None:
        self.at += MINUTE / 10
        body = attest_body(token_id, snp, **options)
        self.replay.feed(
            at=self.at, kind="attest", decision="allow", request_id=None, key_name=None, body=body
        )

    def release(self, request_id: str, token_id: str, decision: str, **options: Any) -> None:
        self.at += MINUTE / 10
        key = options.pop("key", "k")
        self.replay.feed(
            at=self.at,
            kind="release",
            decision=decision,
            request_id=request_id,
            key_name=key,
            body=release_body(token_id, **options),
        )


def test_claims_are_read_back_from_the_attest_record() -> None:
    claims = claims_of(Tee.SNP, AMD_MILAN, reported_tcb={"snp": 7}, chip_id="ab")
    body = {"claims": claims.document(), "evidence_time": "2023-01-01T00:00:00+00:00"}
    again = claims_of_record(body)
    assert again is not None
    assert (again.tee, again.signer, again.debug) == (claims.tee, claims.signer, claims.debug)
    assert again.fields == claims.fields
    assert again.evidence_time == NOW
    assert claims_of_record({"error": {}}) is None


def test_a_stricter_draft_names_the_releases_it_would_deny() -> None:
    history = History(Replay(draft(minimum_snp=8), NOW, LIFETIME))
    history.attest("t-old", snp=7)
    history.attest("t-new", snp=9)
    for n in range(SAMPLES + 2):
        history.release(f"r-old-{n}", "t-old", "allow")
    history.release("r-new", "t-new", "allow")
    report = history.replay.report()
    assert report["releases_replayed"] == SAMPLES + 3
    assert report["unchanged"] == {"allow": 1, "deny": 0}
    assert report["newly_allowed"] == {"total": 0, "by_clause": []}
    assert report["newly_denied"] == {
        "total": SAMPLES + 2,
        "by_clause": [
            {
                "rule": "$.admit.snp.minimum_tcb.snp",
                "count": SAMPLES + 2,
                "sample_request_ids": [f"r-old-{n}" for n in range(SAMPLES)],
            }
        ],
    }


def test_a_looser_draft_names_the_denials_it_would_allow_by_the_clause_that_denied() -> None:
    history = History(Replay(draft(minimum_snp=5), NOW, LIFETIME))
    history.attest("t", snp=6)
    history.release("r1", "t", "deny", reasons=["$.admit.snp.minimum_tcb.snp"])
    report = history.replay.report()
    assert report["newly_allowed"]["by_clause"] == [
        {"rule": "$.admit.snp.minimum_tcb.snp", "count": 1, "sample_request_ids": ["r1"]}
    ]
    assert report["newly_denied"]["total"] == 0


def test_a_one_request_release_is_decided_again_on_the_claims_of_its_own_record() -> None:
    """One record holds a one-request release's attestation and release: no attest record
    and no token precede it."""
    replay = Replay(draft(minimum_snp=8), NOW, LIFETIME)
    for request_id, snp in (("r-weak", 7), ("r-strong", 9)):
        body = {**attest_body("unused", snp), "flow": "one-request", "policy": {"name": "test"}}
        del body["token_id"]
        replay.feed(
            at=NOW + MINUTE,
            kind="release",
            decision="allow",
            request_id=request_id,
            key_name="k",
            body=body,
        )
    report = replay.report()
    assert report["releases_replayed"] == 2
    assert report["skipped"] == {}
    assert report["unchanged"] == {"allow": 1, "deny": 0}
    assert report["newly_denied"]["by_clause"] == [
        {"rule": "$.admit.snp.minimum_tcb.snp", "count": 1, "sample_request_ids": ["r-weak"]}
    ]


def test_what_no_policy_decided_is_skipped_and_other_policies_are_left_out() -> None:
    history = History(Replay(draft(minimum_snp=5), NOW, LIFETIME))
    history.attest("t", snp=6)
    history.replay.feed(
        at=NOW + MINUTE,
        kind="release",
        decision="deny",
        request_id="r-disabled",
        key_name="k",
        body={"token_id": "t", "policy": {"name": "test"}, "error": {"type": "key-disabled"}},
    )
    history.release("r-other", "t", "allow", policy_name="another")
    history.release("r-unknown-token", "t-unknown", "allow")
    report = history.replay.report()
    assert report["releases_replayed"] == 0
    assert report["skipped"] == {
        "claims not found (attestation before the window or not recorded)": 1,
        "not decided by a policy (key-disabled)": 1,
    }


def test_key_scope_replays_one_key_whatever_policy_decided_it() -> None:
    history = History(Replay(draft(minimum_snp=5), NOW, LIFETIME, key="k"))
    history.attest("t", snp=6)
    history.release("r-k", "t", "allow", policy_name="another")
    history.release("r-other-key", "t", "allow", key="other")
    assert history.replay.report()["unchanged"] == {"allow": 1, "deny": 0}


def test_releases_before_the_window_are_not_decided_but_their_tokens_are_read() -> None:
    since = NOW + MINUTE / 4
    history = History(Replay(draft(minimum_snp=8), since, LIFETIME))
    history.attest("t", snp=7)  # at NOW + 6 s: before the window
    history.release("r-before", "t", "allow")  # NOW + 12 s: before the window
    history.release("r-after", "t", "allow")  # NOW + 18 s
    report = history.replay.report()
    assert report["newly_denied"]["by_clause"][0]["sample_request_ids"] == ["r-after"]


def test_claims_of_expired_tokens_are_forgotten() -> None:
    replay = Replay(draft(minimum_snp=5), NOW, LIFETIME)
    history = History(replay)
    history.attest("t-first", snp=6)
    history.at += LIFETIME + MINUTE
    history.attest("t-second", snp=6)
    assert list(replay.claims) == ["t-second"]


def test_the_draft_limits_count_over_the_history() -> None:
    history = History(Replay(draft(5, "limits: {max_releases: 2}\n"), NOW, LIFETIME))
    history.attest("t", snp=6)
    for n in range(4):
        history.release(f"r{n}", "t", "allow")
    history.release("r-other-key", "t", "allow", key="k2")
    report = history.replay.report()
    assert report["unchanged"] == {"allow": 3, "deny": 0}
    assert report["newly_denied"]["by_clause"] == [
        {"rule": "$.limits.max_releases", "count": 2, "sample_request_ids": ["r2", "r3"]}
    ]


def test_a_per_instance_draft_denies_evidence_without_an_instance() -> None:
    history = History(Replay(draft(5, "limits: {once_per_instance: true}\n"), NOW, LIFETIME))
    history.attest("masked", snp=6, chip="00" * 64)
    history.attest("a", snp=6)
    history.release("r-masked", "masked", "allow")
    history.release("r-a", "a", "allow")
    history.release("r-a-again", "a", "allow")
    groups = history.replay.report()["newly_denied"]["by_clause"]
    assert groups == [
        {
            "rule": "$.limits.once_per_instance",
            "count": 2,
            "sample_request_ids": ["r-masked", "r-a-again"],
        }
    ]
