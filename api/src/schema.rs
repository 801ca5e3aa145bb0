// @generated automatically by Diesel CLI.

diesel::table! {
    address_attempts (address) {
        address -> Text,
        attempts -> Int4,
        window_start -> Timestamptz,
        locked_until -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    blobs (id) {
        id -> Uuid,
        uploader_id -> Int8,
        size -> Int8,
        data -> Bytea,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    group_members (group_id, user_id) {
        group_id -> Int8,
        user_id -> Int8,
        is_admin -> Bool,
        joined_at -> Timestamptz,
        key_fingerprint -> Text,
    }
}

diesel::table! {
    group_statements (group_id, seq) {
        group_id -> Int8,
        seq -> Int8,
        text -> Text,
        sig -> Text,
    }
}

diesel::table! {
    groups (id) {
        id -> Int8,
        name -> Text,
        created_at -> Timestamptz,
        uid -> Uuid,
        epoch -> Int8,
        head -> Bytea,
    }
}

diesel::table! {
    inbox_events (user_id, seq) {
        user_id -> Int8,
        seq -> Int8,
        message_id -> Nullable<Int8>,
        group_event -> Nullable<Jsonb>,
    }
}

diesel::table! {
    inboxes (user_id) {
        user_id -> Int8,
        last_seq -> Int8,
    }
}

diesel::table! {
    login_attempts (username, address) {
        username -> Text,
        address -> Text,
        attempts -> Int4,
        window_start -> Timestamptz,
        locked_until -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    message_attachments (message_id, blob_id) {
        message_id -> Int8,
        blob_id -> Uuid,
    }
}

diesel::table! {
    message_keys (message_id, user_id) {
        message_id -> Int8,
        user_id -> Int8,
        wrapped_key -> Text,
    }
}

diesel::table! {
    messages (id) {
        id -> Int8,
        sender_id -> Int8,
        recipient_id -> Nullable<Int8>,
        client_id -> Uuid,
        kind -> Text,
        nonce -> Text,
        ciphertext -> Text,
        sig -> Text,
        attachments -> Array<Nullable<Text>>,
        sent_at -> Timestamptz,
        pair_low -> Nullable<Int8>,
        pair_high -> Nullable<Int8>,
        group_id -> Nullable<Int8>,
        signed_at -> Nullable<Text>,
        group_epoch -> Nullable<Int8>,
        group_head -> Nullable<Text>,
    }
}

diesel::table! {
    presence (user_id, server_id) {
        user_id -> Int8,
        server_id -> Uuid,
    }
}

diesel::table! {
    read_marks (user_id, peer_id, group_id) {
        user_id -> Int8,
        peer_id -> Int8,
        group_id -> Int8,
        seq -> Int8,
        message_id -> Int8,
        read_at -> Timestamptz,
    }
}

diesel::table! {
    servers (id) {
        id -> Uuid,
        address -> Text,
        started_at -> Timestamptz,
        heartbeat_at -> Timestamptz,
        open_streams -> Int4,
        admin_address -> Nullable<Text>,
    }
}

diesel::table! {
    sessions (token_hash) {
        token_hash -> Bytea,
        user_id -> Int8,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
    }
}

diesel::table! {
    users (id) {
        id -> Int8,
        username -> Text,
        password_hash -> Text,
        public_key -> Text,
        key_backup -> Nullable<Text>,
        created_at -> Timestamptz,
        contacts_backup -> Nullable<Text>,
    }
}

diesel::joinable!(blobs -> users (uploader_id));
diesel::joinable!(group_members -> groups (group_id));
diesel::joinable!(group_members -> users (user_id));
diesel::joinable!(group_statements -> groups (group_id));
diesel::joinable!(inboxes -> users (user_id));
diesel::joinable!(message_attachments -> blobs (blob_id));
diesel::joinable!(message_attachments -> messages (message_id));
diesel::joinable!(messages -> groups (group_id));
diesel::joinable!(presence -> servers (server_id));
diesel::joinable!(presence -> users (user_id));
diesel::joinable!(read_marks -> users (user_id));
diesel::joinable!(sessions -> users (user_id));

diesel::allow_tables_to_appear_in_same_query!(
    address_attempts,
    blobs,
    group_members,
    group_statements,
    groups,
    inbox_events,
    inboxes,
    login_attempts,
    message_attachments,
    message_keys,
    messages,
    presence,
    read_marks,
    servers,
    sessions,
    users,
);
