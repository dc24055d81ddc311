//! Protocol conformance over HTTP (issue 17) on SQLite: the checks of
//! `http_conformance/`, which `postgres.rs` runs on PostgreSQL too.

mod http_common;
mod http_conformance;

macro_rules! on_sqlite {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            http_conformance::$name(http_common::sqlite_backend()).await;
        }
    )*};
}

on_sqlite!(
    trailing_bytes_after_the_body_are_400_and_nothing_is_applied,
    decoding_errors_start_with_body_or_the_field_path,
    refusals_outside_the_handlers_have_the_json_error_body,
    bodies_over_the_limit_are_413_before_the_body_is_read,
    the_same_terminal_and_op_id_on_two_branches_are_both_applied,
    no_query_parameter_yields_a_5xx,
    id_limits_are_bytes_and_client_and_server_agree,
    edge_cases_have_the_documented_outcomes,
    whoami_answers_the_keys_identity_behind_the_gate,
    a_pairing_code_redeems_once_for_a_key_that_works,
    concurrent_redeems_of_one_code_give_exactly_one_key,
    a_flood_of_bad_pairing_codes_is_rate_limited_like_bad_keys,
);
