"""Schemathesis against our own OpenAPI document: generated requests, no 5xx, responses match.

Every operation of /api/openapi.json gets requests generated from its schema
(valid and invalid values), sent to the app in process; schemathesis checks
status codes, content types, headers and bodies against the document, and
that nothing answers 5xx. One check is left out: that every schema-valid
request is accepted. A JSON schema cannot say "a question with at least one
printable character" or "an existing article path", and those are refused with
a documented 4xx by design.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from kbqa.app import create_app
from kbqa.kb import KnowledgeBase
from tests.conftest import make_config


@pytest.fixture(scope="module")
def api_schema(corpus_index, tmp_path_factory):
    cfg = make_config(index_dir=corpus_index, rate_limit="off",
                      feedback_db=tmp_path_factory.mktemp("fb") / "feedback.sqlite3")
    app = create_app(cfg, kb=KnowledgeBase(cfg))
    return schemathesis.openapi.from_wsgi("/api/openapi.json", app)


def test_every_operation_conforms_to_the_document(api_schema):
    operations = [r.ok() for r in api_schema.get_all_operations()]
    assert len(operations) >= 6
    checked = []
    for op in operations:
        @given(case=op.as_strategy())
        @settings(max_examples=15, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def run(case):
            case.call_and_validate(excluded_checks=[positive_data_acceptance])

        run()
        checked.append(f"{op.method.upper()} {op.path}")
    print("checked:", ", ".join(checked))
