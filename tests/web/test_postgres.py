"""The admin API's smoke tests again, on PostgreSQL (the rest of tests/web runs on SQLite).

The test functions are imported from their modules; the `engine` fixture below makes their
store a fresh PostgreSQL database (see tests/support/db.py: PCNET_TEST_POSTGRES=0 skips them).
"""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pytest_twisted import ensureDeferred

from tests.support.db import postgres_enabled

from .test_accounts import (  # noqa: F401
    test_access_grant_and_revoke,
    test_adjust_and_set_are_idempotent_with_a_uuid,
    test_adjust_and_set_balance_write_ledger_rows,
    test_shared_account_create_get_update,
)
from .test_errors import (  # noqa: F401
    ROUTES,
    bodies,
    check_body_never_500,
    check_path_never_500,
    check_spec_body_never_500,
    json_values,
    path_segments,
    spec_bodies,
    test_malformed_json_is_400,
    test_missing_token_is_401_with_a_bearer_challenge,
    test_token_of_a_disabled_or_demoted_user_is_refused,
    test_wrong_types_and_missing_fields_name_the_field,
)
from .test_jobs import (  # noqa: F401
    test_an_import_over_the_job_limits_is_denied_and_logged_like_a_printed_job,
    test_import_denied_for_insufficient_balance_charges_nothing,
    test_import_input_is_checked,
    test_import_is_idempotent,
    test_import_to_a_shared_account_needs_access,
    test_issue_scenario_user_printer_import_charge_balance_ledger,
    test_job_log_filters,
)
from .test_printers import (  # noqa: F401
    test_create_printer_with_cost_model_and_filters,
    test_rename_keeps_the_id_and_patch_merges_cost_model_and_filters,
)
from .test_quotas_tokens import (  # noqa: F401
    test_node_invitation_fields_are_checked,
    test_nodes_list_approve_reject,
    test_quota_lifecycle,
    test_tokens_create_list_revoke,
)
from .test_users_groups import (  # noqa: F401
    test_create_user_hashes_secrets_and_never_returns_them,
    test_duplicate_username_is_a_conflict,
    test_get_user_by_id_username_and_prefixed_numeric_username,
    test_groups_and_members,
    test_list_users_pages_and_searches,
    test_names_with_url_special_characters_round_trip,
    test_patch_user_changes_only_what_is_sent,
)

# Skipped here, before any fixture runs: a skip raised inside pytest-twisted's async yield
# fixture would leave pytest's fixture state broken for the tests after it.
pytestmark = pytest.mark.skipif(not postgres_enabled(), reason="PCNET_TEST_POSTGRES=0")


@pytest.fixture
def engine():
    return "postgres"


# Hypothesis tests cannot be shared between modules under pytest-twisted: declared again here.

@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(route=st.sampled_from(ROUTES), body=bodies | json_values)
@ensureDeferred
async def test_fuzzed_json_bodies_never_cause_a_500_on_postgres(client, route, body):
    await check_body_never_500(client, route, body)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(segment=path_segments)
@ensureDeferred
async def test_fuzzed_path_references_never_cause_a_500_on_postgres(client, segment):
    await check_path_never_500(client, segment)


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(drawn=spec_bodies())
@ensureDeferred
async def test_nearly_valid_bodies_for_every_route_never_cause_a_500_on_postgres(client, drawn):
    await check_spec_body_never_500(client, drawn)
