//! The portable schema: the same tables on SQLite and PostgreSQL (UUIDs as text, UTC timestamps).

diesel::table! {
    nodes (id) {
        id -> Text,
        name -> Text,
        roles -> Text,
        version -> Text,
        addresses -> Text,
        status -> Text,
        started_at -> Timestamp,
        last_seen_at -> Timestamp,
    }
}

diesel::table! {
    jobs (id) {
        id -> Text,
        queue -> Text,
        kind -> Text,
        payload -> Text,
        status -> Text,
        attempts -> Integer,
        max_attempts -> Integer,
        run_at -> Timestamp,
        lease_id -> Nullable<Text>,
        locked_by -> Nullable<Text>,
        locked_until -> Nullable<Timestamp>,
        last_error -> Nullable<Text>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    job_dedup (queue, dedup_key) {
        queue -> Text,
        dedup_key -> Text,
        job_id -> Text,
        expires_at -> Timestamp,
    }
}
