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

diesel::table! {
    organizations (id) {
        id -> Text,
        name -> Text,
        slug -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    users (id) {
        id -> Text,
        organization_id -> Text,
        email -> Text,
        name -> Text,
        password_hash -> Text,
        role -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    api_keys (id) {
        id -> Text,
        organization_id -> Text,
        created_by -> Nullable<Text>,
        name -> Text,
        key_type -> Text,
        prefix -> Text,
        key_hash -> Text,
        scopes -> Text,
        rate_per_minute -> Nullable<Integer>,
        rate_burst -> Nullable<Integer>,
        expires_at -> Nullable<Timestamp>,
        revoked_at -> Nullable<Timestamp>,
        last_used_at -> Nullable<Timestamp>,
        created_at -> Timestamp,
        agent_id -> Nullable<Text>,
    }
}

diesel::table! {
    refresh_tokens (id) {
        id -> Text,
        organization_id -> Text,
        user_id -> Text,
        family_id -> Text,
        token_hash -> Text,
        expires_at -> Timestamp,
        rotated_at -> Nullable<Timestamp>,
        revoked_at -> Nullable<Timestamp>,
        created_at -> Timestamp,
    }
}

diesel::table! {
    audit_log (id) {
        id -> Text,
        organization_id -> Text,
        actor_type -> Text,
        actor_id -> Nullable<Text>,
        action -> Text,
        target_type -> Nullable<Text>,
        target_id -> Nullable<Text>,
        outcome -> Text,
        details -> Text,
        ip -> Nullable<Text>,
        created_at -> Timestamp,
    }
}

diesel::table! {
    contexts (id) {
        id -> Text,
        organization_id -> Text,
        name -> Text,
        context_type -> Text,
        agent_id -> Nullable<Text>,
        model_id -> Nullable<Text>,
        session_id -> Nullable<Text>,
        metadata -> Text,
        token_budget -> Nullable<BigInt>,
        version -> BigInt,
        item_count -> BigInt,
        token_total -> BigInt,
        next_seq -> BigInt,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    context_items (id) {
        id -> Text,
        context_id -> Text,
        organization_id -> Text,
        seq -> BigInt,
        role -> Text,
        content -> Text,
        token_count -> BigInt,
        metadata -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    settings (key) {
        key -> Text,
        value -> Text,
        created_at -> Timestamp,
    }
}

diesel::joinable!(context_items -> contexts (context_id));
diesel::allow_tables_to_appear_in_same_query!(contexts, context_items);

diesel::table! {
    invitations (id) {
        id -> Text,
        organization_id -> Text,
        email -> Text,
        role -> Text,
        token_hash -> Text,
        invited_by -> Text,
        expires_at -> Timestamp,
        accepted_at -> Nullable<Timestamp>,
        revoked_at -> Nullable<Timestamp>,
        created_at -> Timestamp,
    }
}

diesel::table! {
    mcp_tasks (id) {
        id -> Text,
        organization_id -> Text,
        owner -> Text,
        tool -> Text,
        request -> Text,
        status -> Text,
        status_message -> Nullable<Text>,
        pending -> Nullable<Text>,
        outcome -> Nullable<Text>,
        runner_node -> Nullable<Text>,
        revision -> BigInt,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        expires_at -> Timestamp,
    }
}

diesel::table! {
    gateway_tools (id) {
        id -> Text,
        organization_id -> Text,
        name -> Text,
        base_url -> Text,
        settings -> Text,
        auth_kind -> Nullable<Text>,
        auth_sealed -> Nullable<Text>,
        document -> Nullable<Text>,
        discovery -> Text,
        api -> Nullable<Text>,
        revision -> BigInt,
        health -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    gateway_learned_paths (organization_id, host_pattern) {
        organization_id -> Text,
        host_pattern -> Text,
        path -> Text,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    gateway_credentials (tool_id, owner) {
        tool_id -> Text,
        organization_id -> Text,
        owner -> Text,
        auth_kind -> Text,
        auth_sealed -> Text,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    agents (id) {
        id -> Text,
        organization_id -> Text,
        name -> Text,
        description -> Text,
        capabilities -> Text,
        capability_names -> Text,
        tags -> Text,
        model -> Nullable<Text>,
        cost_per_task_usd -> Nullable<Double>,
        cost_per_1k_tokens_usd -> Nullable<Double>,
        max_concurrent_tasks -> Integer,
        metadata -> Text,
        status -> Text,
        load -> Integer,
        last_seen_at -> Nullable<Timestamp>,
        last_assigned_at -> Nullable<Timestamp>,
        consecutive_failures -> Integer,
        circuit_open_until -> Nullable<Timestamp>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    agent_rotations (organization_id, capabilities) {
        organization_id -> Text,
        capabilities -> Text,
        last_agent_id -> Text,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    agent_stats (agent_id, task_type) {
        agent_id -> Text,
        organization_id -> Text,
        task_type -> Text,
        completed -> BigInt,
        failed -> BigInt,
        timed_out -> BigInt,
        latency_ewma_ms -> Nullable<Double>,
        recent_latencies_ms -> Text,
        cost_usd -> Double,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    tasks (id) {
        id -> Text,
        organization_id -> Text,
        title -> Text,
        task_type -> Text,
        description -> Text,
        input -> Text,
        spec -> Text,
        priority -> Integer,
        max_attempts -> Integer,
        attempts -> Integer,
        idempotency_key -> Nullable<Text>,
        request_hash -> Text,
        context_id -> Nullable<Text>,
        parent_id -> Nullable<Text>,
        pinned_agent_id -> Nullable<Text>,
        status -> Text,
        agent_id -> Nullable<Text>,
        deadline_at -> Nullable<Timestamp>,
        progress -> Nullable<Text>,
        output -> Nullable<Text>,
        error -> Nullable<Text>,
        decision -> Nullable<Text>,
        waiting_reason -> Nullable<Text>,
        created_by -> Text,
        version -> BigInt,
        created_at -> Timestamp,
        assigned_at -> Nullable<Timestamp>,
        started_at -> Nullable<Timestamp>,
        finished_at -> Nullable<Timestamp>,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    task_events (id) {
        id -> Text,
        task_id -> Text,
        organization_id -> Text,
        from_status -> Nullable<Text>,
        to_status -> Text,
        agent_id -> Nullable<Text>,
        actor -> Text,
        reason -> Nullable<Text>,
        at -> Timestamp,
    }
}

diesel::allow_tables_to_appear_in_same_query!(agents, tasks);
diesel::allow_tables_to_appear_in_same_query!(contexts, tasks);
