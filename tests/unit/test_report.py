"""The fleet report's page, pure: what each kind of key looks like, and the empty fleet."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser

import pytest

from byok_keeper.domain.errors import InputError
from byok_keeper.domain.lease import parse_lease
from byok_keeper.gateway.kms import KmsUnavailable
from byok_keeper.operations.report import Fleet, render_html, rows_from, write_html
from byok_keeper.planning.plan import Decision, Policy

NOW = datetime(2026, 11, 29, 8, 0, tzinfo=timezone.utc)


def page_for(*decisions: Decision, errors=()) -> str:
    rows = rows_from(decisions, errors, Policy())
    return render_html(Fleet(NOW, NOW + timedelta(minutes=15), "cn-hangzhou", tuple(rows)))


def test_each_kind_of_key_is_drawn_and_explained():
    page = page_for(
        Decision("key-never", "OK", "material never expires", "Enabled", "EC_P256", None),
        Decision(
            "key-far",
            "OK",
            "far",
            "Enabled",
            "EC_P256",
            NOW + timedelta(days=900),
            parse_lease("365d"),
        ),
        Decision("key-gone", "ALERT", "no longer exists", "NotFound", "EC_P256", None),
        Decision("key-dying", "SKIP", "pending deletion", "PendingDeletion", "RSA_2048", None),
        errors=[("key-lost", KmsUnavailable("DescribeKey", "timeout"))],
    )
    assert ">never</text>" in page  # a never-expiring key reaches the axis end
    assert "\u2192 2029-05-17" in page  # beyond the axis: an arrow and the date
    assert "key gone from KMS" in page and "pending deletion" in page
    assert "KMS could not describe it" in page and "no answer from KMS" in page
    assert ">ALERT: 2 keys</h2>" in page and ">OK: 2 keys</h2>" in page
    assert "next sweep 2026-11-29 08:15 UTC" in page


def test_an_empty_fleet_says_so():
    page = page_for()
    assert "No keys enrolled." in page and "0 keys" in page


def test_an_unwritable_path_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="cannot write the report"):
        write_html(tmp_path / "missing" / "fleet.html", "<html></html>")


def test_reasons_are_text_on_the_page_and_no_material_is_not_never():
    """What a screenshot in a ticket shows: why each ALERT and HOLD key is so, in the page's
    text (not only in tooltips), and a key without material never reads "never"."""
    page = page_for(
        Decision(
            "key-gone",
            "ALERT",
            "enrolled, but KMS no longer has the key",
            "NotFound",
            "EC_P256",
            None,
        ),
        Decision("key-held", "HOLD", "held: INC-7 kill switch", "PendingImport", "EC_P256", None),
        Decision("key-never", "OK", "material never expires", "Enabled", "EC_P256", None),
    )
    body = page.split("<svg", 1)[0] + "".join(
        part.split("</svg>", 1)[-1] for part in page.split("<svg")[1:]
    )  # the page without its drawings: what is written, not drawn
    assert "enrolled, but KMS no longer has the key" in body
    assert "held: INC-7 kill switch" in body
    assert "no material (deleted or expired)" in body  # the held PendingImport key
    assert "key-held EC_P256 PendingImport: HOLD, no material" in page  # its tooltip too
    assert "HOLD, expires never" not in page and "OK, never expires" in page


def test_the_page_names_account_target_and_where_its_schedule_came_from():
    from byok_keeper.operations.report import report_schedule

    schedule, source = report_schedule(None, "0 0 0/6 * * *")  # the FC timer's default cron
    assert schedule == "0 0 0/6 * * *" and "BYOK_SWEEP_INTERVAL" in source
    assert report_schedule(None, "") == ("*/15 * * * *", "the daemon's default")
    assert report_schedule("@every 1h", "6h") == ("@every 1h", "--schedule")
    fleet = Fleet(NOW, NOW + timedelta(hours=4), "eu-central-1", (), account_id="1234567890123456",
                  target="prod-fra", schedule=f"{schedule} ({source})")  # fmt: skip
    page = render_html(fleet)
    assert "target prod-fra \u00b7 account 1234567890123456 \u00b7 region eu-central-1" in page
    assert "next sweep 2026-11-29 12:00 UTC (schedule 0 0 0/6 * * * (BYOK_SWEEP_INTERVAL" in page


# ---- every attacker-writable field is escaped in the page ------------------------------------

_HOSTILE = "<script>alert(1)</script><img src=x onerror=alert(2)>\"'&amp;"
_TAGS = {"html", "head", "meta", "title", "style", "body", "h1", "h2", "div", "span", "i", "p",
         "svg", "line", "text", "a", "g", "rect", "path", "table", "tr", "th", "td"}  # fmt: skip


class _Page(HTMLParser):
    """Every element, attribute and text node of a page, as a browser's tokenizer sees them."""

    def __init__(self, page: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: set[str] = set()
        self.attrs: list[tuple[str, str | None]] = []
        self.text: list[str] = []
        self.feed(page)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        self.attrs += attrs

    def handle_data(self, data):
        self.text.append(data)


def _fleet_with(field: str) -> Fleet:
    """One key of each kind (a bar, no material, never expires, KMS could not describe it) with
    the hostile text in ``field`` of every one of them, or in the region."""
    expiry = NOW + timedelta(days=3)
    decisions = [
        Decision("key-bar", "HOLD", "held: by ops", "Enabled", "EC_P256", expiry),
        Decision("key-gone", "REIMPORT", "deleted", "PendingImport", "RSA_2048", None),
        Decision("key-never", "OK", "never", "Enabled", "EC_SM2", None),
    ]
    page = {"region": "cn-hangzhou", "account_id": "1234567890123456", "target": "prod"}
    if field in page:  # the page's own fields: the settings name them, the heading shows them
        page[field] = _HOSTILE
    else:
        decisions = [replace(d, **{field: _HOSTILE}) for d in decisions]
    error = KmsUnavailable("DescribeKey", _HOSTILE if field == "reason" else "timeout")
    errors = [(_HOSTILE if field == "key_id" else "key-lost", error)]
    rows = tuple(rows_from(decisions, errors, Policy()))
    return Fleet(NOW, NOW + timedelta(minutes=15), page["region"], rows,
                 account_id=page["account_id"], target=page["target"])  # fmt: skip


@pytest.mark.parametrize(
    "field", ["key_id", "reason", "key_spec", "key_state", "region", "account_id", "target"]
)
def test_every_field_that_reaches_the_page_is_escaped(field):
    """Key ids, reasons (hold reasons and lease tags are attacker-writable tag values; an error's
    text), specs and states (a hostile KMS answers them) and the region reach the page: each
    comes out as text, never as markup."""
    page = render_html(_fleet_with(field))
    parsed = _Page(page)
    assert parsed.tags <= _TAGS, parsed.tags - _TAGS
    assert not [name for name, _ in parsed.attrs if name.startswith("on")]
    assert "<script" not in page and "<img" not in page
    # The text survives whole: what the attacker wrote is shown, as text, where it belongs.
    shown = "".join(parsed.text)
    assert _HOSTILE in shown, field
