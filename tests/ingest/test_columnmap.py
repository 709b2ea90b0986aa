"""Column maps: the shipped maps load with the standard field names; a bad map is refused with every problem at once."""

from __future__ import annotations

import pytest

from pbc_analysis.ingest import columnmap
from pbc_analysis.ingest.columnmap import ANY, FIELDS, ColumnMapError, load_map


def test_shipped_maps_load_and_name_the_standard_columns():
    opa = load_map("hes_opa")
    assert opa.source == "outpatients" and opa.header
    assert dict(opa.columns) == {
        "event_id": "ATTENDKEY", "patient_id": "TOKEN_PERSON_ID", "practice_code": "GPPRAC", "provider_code": "PROCODE3",
        "specialty_code": "TRETSPEF", "first_attendance": "FIRSTATT", "attended": "ATTENDED", "referral_source": "REFSOURC",
        "appointment_date": "APPTDATE", "referral_received_date": "REQDATE", "hrg": "HRG", "cost": "COST"}
    assert opa.category_of("first_attendance") == {"1": "first", "3": "first", "2": "followup", "4": "followup", "5": "excluded"}
    assert opa.any_category("referral_source") == "other" and opa.category_of("referral_source") == {"03": "gp"}
    assert dict(opa.pad) == {"specialty_code": 3, "referral_source": 2}
    apc = load_map("hes_apc")
    assert (apc.columns["event_id"], apc.columns["spell_id"], apc.columns["episode_order"], apc.columns["hrg"]) == \
        ("EPIKEY", "SPELL_ID", "EPIORDER", "SPELHRG")
    assert apc.category_of("admission_method")["2A"] == "non_elective" and apc.category_of("admission_method")["31"] == "excluded"
    assert load_map("ecds").category_of("department_type") == {"01": "type_1", "02": "other", "03": "other", "04": "other"}
    assert dict(load_map("ers").columns) == {"event_id": "UBRN", "patient_id": "TOKEN_PERSON_ID", "practice_code": "REFERRER_ORG",
                                            "provider_code": "PROVIDER_ORG", "specialty_code": "TFC", "referral_date": "REFERRAL_DATE"}


def test_every_shipped_map_is_valid_for_its_kind():
    for name in columnmap.shipped_maps():
        m = load_map(name)
        assert m.source in FIELDS
        assert all(f in m.columns for f, spec in FIELDS[m.source].items() if not spec.optional), name


def test_a_bad_map_is_refused_with_every_problem(tmp_path):
    bad = tmp_path / "mine.yaml"
    bad.write_text("""
source: outpatients
colour: blue
columns: {event_id: ID, practice_code: PRAC, provider_code: PROV, specialty_code: TFC, first_attendance: FA,
          attended: ATT, appointment_date: DAY, referal_source: RS}
pad: {appointment_date: 3}
date_format: {appointment_date: "day"}
codes:
  first_attendance: {first: ["1", "3"], followup: ["3"], excluded: []}
  attended: {seen: [5, 6], not_seen: any}
""")
    with pytest.raises(ColumnMapError) as err:
        load_map(bad)
    text = "\n".join(err.value.problems)
    assert "unknown key 'colour'" in text
    assert "columns.referal_source: not a field" in text and "did you mean 'referral_source'" in text
    assert "required field 'referral_source' of outpatients is missing" in text
    assert "pad.appointment_date: only code fields take a pad" in text
    assert "date_format.appointment_date: must be a strptime format" in text
    assert "code '3' is in two categories, 'first' and 'followup'" in text
    assert "codes.attended.seen: must be a list of codes written as quoted text" in text
    assert len(err.value.problems) == 7


def test_map_for_another_kind_and_unknown_name_are_refused():
    with pytest.raises(ColumnMapError, match="is for 'outpatients' but is used for 'ae'"):
        load_map("hes_opa", "ae")
    with pytest.raises(ColumnMapError, match="no shipped column map 'hes_op'.*did you mean 'hes_opa'"):
        load_map("hes_op")


def test_positions_without_header_and_any_category(tmp_path):
    m = tmp_path / "ers_noheader.yaml"
    m.write_text("source: referrals\nheader: false\ncolumns: {event_id: 1, practice_code: 2, provider_code: 3, "
                 "specialty_code: 4, referral_date: 5}\n")
    cmap = load_map(str(m))
    assert cmap.header is False and cmap.columns["referral_date"] == 5
    m.write_text("source: referrals\nheader: false\ncolumns: {event_id: ID, practice_code: 0, provider_code: 3, "
                 "specialty_code: 3, referral_date: 5}\n")
    with pytest.raises(ColumnMapError) as err:
        load_map(str(m))
    assert len(err.value.problems) == 3   # ID not a position, 0 not >= 1, column 3 used twice
    assert ANY == "any"
