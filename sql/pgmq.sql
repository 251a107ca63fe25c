-- The pgmq-compatible queue layer (pgmq 1.13's functions, tables and errors).
--
-- Every per-queue function finds its tables through pgmq.format_table_name, which rejects
-- the characters that could end an identifier or a statement, and every dynamic statement
-- quotes identifiers with format('%I') and passes values as parameters. A queue name never
-- reaches SQL text unquoted.

DO $guard$
BEGIN
    IF to_regclass('pgmq.meta') IS NOT NULL THEN
        RAISE EXCEPTION 'schema "pgmq" already holds a queue registry (pgmq.meta)'
            USING ERRCODE = 'duplicate_table',
                  HINT = 'pgflow_core provides its own pgmq schema. Drop the pgmq extension (or schema) first.';
    END IF;
END
$guard$;

CREATE SCHEMA IF NOT EXISTS pgmq;

---------------------------------------------------------------------------------------------------
-- Registry and types
---------------------------------------------------------------------------------------------------

CREATE TABLE pgmq.meta (
    queue_name     varchar     NOT NULL,
    is_partitioned boolean     NOT NULL,
    is_unlogged    boolean     NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT meta_queue_name_key UNIQUE (queue_name)
);

GRANT USAGE ON SCHEMA pgmq TO pg_monitor;
GRANT SELECT ON ALL TABLES IN SCHEMA pgmq TO pg_monitor;
GRANT SELECT ON ALL SEQUENCES IN SCHEMA pgmq TO pg_monitor;
ALTER DEFAULT PRIVILEGES IN SCHEMA pgmq GRANT SELECT ON TABLES TO pg_monitor;
ALTER DEFAULT PRIVILEGES IN SCHEMA pgmq GRANT SELECT ON SEQUENCES TO pg_monitor;

CREATE UNLOGGED TABLE pgmq.notify_insert_throttle (
    queue_name           varchar     NOT NULL,
    throttle_interval_ms integer     NOT NULL DEFAULT 0,
    last_notified_at     timestamptz NOT NULL DEFAULT to_timestamp(0),
    CONSTRAINT notify_insert_throttle_queue_name_key UNIQUE (queue_name),
    CONSTRAINT notify_insert_throttle_meta_queue_name_fk FOREIGN KEY (queue_name)
        REFERENCES pgmq.meta (queue_name) ON DELETE CASCADE
);
CREATE INDEX idx_notify_throttle_active
    ON pgmq.notify_insert_throttle (queue_name, last_notified_at)
    WHERE throttle_interval_ms > 0;

CREATE TABLE pgmq.topic_bindings (
    pattern        text        NOT NULL,
    queue_name     text        NOT NULL,
    bound_at       timestamptz NOT NULL DEFAULT now(),
    -- '^' + pattern with regex metacharacters escaped, '*' = one segment, '#' = anything, + '$'
    compiled_regex text GENERATED ALWAYS AS (
        '^' || replace(replace(
                  regexp_replace(pattern, '([.+?{}()|\[\]\\^$])', '\\\1', 'g'),
                  '*', '[^.]+'),
                '#', '.*') || '$'
    ) STORED,
    CONSTRAINT topic_bindings_meta_queue_name_fk FOREIGN KEY (queue_name)
        REFERENCES pgmq.meta (queue_name) ON DELETE CASCADE,
    CONSTRAINT topic_bindings_unique_pattern_queue UNIQUE (pattern, queue_name)
);
CREATE INDEX idx_topic_bindings_covering
    ON pgmq.topic_bindings (pattern) INCLUDE (queue_name, compiled_regex);

SELECT pg_catalog.pg_extension_config_dump('pgmq.meta', '');
SELECT pg_catalog.pg_extension_config_dump('pgmq.notify_insert_throttle', '');
SELECT pg_catalog.pg_extension_config_dump('pgmq.topic_bindings', '');

CREATE TYPE pgmq.message_record AS (
    msg_id       bigint,
    read_ct      integer,
    enqueued_at  timestamptz,
    last_read_at timestamptz,
    vt           timestamptz,
    message      jsonb,
    headers      jsonb
);

CREATE TYPE pgmq.queue_record AS (
    queue_name     varchar,
    is_partitioned boolean,
    is_unlogged    boolean,
    created_at     timestamptz
);

CREATE TYPE pgmq.metrics_result AS (
    queue_name               text,
    queue_length             bigint,
    newest_msg_age_sec       integer,
    oldest_msg_age_sec       integer,
    total_messages           bigint,
    scrape_time              timestamptz,
    queue_visible_length     bigint,
    default_partition_length bigint
);

---------------------------------------------------------------------------------------------------
-- Queue names
---------------------------------------------------------------------------------------------------

-- The check and the lower-casing are pgmq._format_table_name's (src/queue/name.rs), the rule
-- of every queue function written in Rust.
CREATE FUNCTION pgmq.format_table_name(queue_name text, prefix text)
RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    RETURN pgmq._format_table_name(queue_name, prefix);
END;
$$;

CREATE FUNCTION pgmq.validate_queue_name(queue_name text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF pg_catalog.length(queue_name) OPERATOR(pg_catalog.>) 47 THEN
        RAISE EXCEPTION 'queue name is too long, maximum length is 47 characters';
    END IF;
END;
$$;

-- Beyond pgmq: a name whose table names would be truncated (more than 47 bytes, as multi-byte
-- names can be) would share another queue's tables. create* refuse it instead of merging.
CREATE FUNCTION pgmq._check_queue_name_bytes(queue_name text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF GREATEST(pg_catalog.octet_length(queue_name),
                    pg_catalog.octet_length(pg_catalog.lower(queue_name))) OPERATOR(pg_catalog.>) 47 THEN
        RAISE EXCEPTION 'queue name is too long, maximum length is 47 bytes'
            USING ERRCODE = 'name_too_long',
                  HINT = 'Longer names would be truncated into the table names of another queue.';
    END IF;
END;
$$;

CREATE FUNCTION pgmq.acquire_queue_lock(queue_name text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('pgmq.queue_' OPERATOR(pg_catalog.||) queue_name));
END;
$$;

CREATE FUNCTION pgmq._extension_exists(extension_name text)
RETURNS boolean LANGUAGE sql AS $$
    SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname OPERATOR(pg_catalog.=) extension_name)
$$;

CREATE FUNCTION pgmq._belongs_to_pgmq(table_name text)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    RETURN EXISTS (
        SELECT 1
        FROM pg_catalog.pg_depend d
        JOIN pg_catalog.pg_extension e ON e.oid OPERATOR(pg_catalog.=) d.refobjid
        JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) d.objid
        WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
          AND d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_extension'::pg_catalog.regclass
          AND d.deptype OPERATOR(pg_catalog.=) 'e'
          AND e.extname OPERATOR(pg_catalog.=) 'pgmq'
          AND c.relname OPERATOR(pg_catalog.=) _belongs_to_pgmq.table_name);
END;
$$;

---------------------------------------------------------------------------------------------------
-- Queue management
---------------------------------------------------------------------------------------------------

-- Creates the queue and archive tables of a standard or unlogged queue (shared by create*).
CREATE FUNCTION pgmq._create_queue_tables(queue_name text, unlogged boolean)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    qtable pg_catalog.text := pgmq.format_table_name(queue_name, 'q');
    atable pg_catalog.text := pgmq.format_table_name(queue_name, 'a');
BEGIN
    PERFORM pgmq.validate_queue_name(queue_name);
    PERFORM pgmq._check_queue_name_bytes(queue_name);
    PERFORM pgmq.acquire_queue_lock(queue_name);

    EXECUTE pg_catalog.format(
        'CREATE %s TABLE IF NOT EXISTS pgmq.%I (
            msg_id       bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY,
            read_ct      integer NOT NULL DEFAULT 0,
            enqueued_at  pg_catalog.timestamptz NOT NULL DEFAULT pg_catalog.now(),
            last_read_at pg_catalog.timestamptz,
            vt           pg_catalog.timestamptz NOT NULL,
            message      pg_catalog.jsonb,
            headers      pg_catalog.jsonb)',
        CASE WHEN unlogged THEN 'UNLOGGED' ELSE '' END, qtable);
    EXECUTE pg_catalog.format(
        'CREATE TABLE IF NOT EXISTS pgmq.%I (
            msg_id       bigint PRIMARY KEY,
            read_ct      integer NOT NULL DEFAULT 0,
            enqueued_at  pg_catalog.timestamptz NOT NULL DEFAULT pg_catalog.now(),
            last_read_at pg_catalog.timestamptz,
            archived_at  pg_catalog.timestamptz NOT NULL DEFAULT pg_catalog.now(),
            vt           pg_catalog.timestamptz NOT NULL,
            message      pg_catalog.jsonb,
            headers      pg_catalog.jsonb)',
        atable);
    EXECUTE pg_catalog.format('CREATE INDEX IF NOT EXISTS %I ON pgmq.%I (vt ASC)', qtable OPERATOR(pg_catalog.||) '_vt_idx', qtable);
    EXECUTE pg_catalog.format('CREATE INDEX IF NOT EXISTS %I ON pgmq.%I (archived_at)',
                   'archived_at_idx_' OPERATOR(pg_catalog.||) queue_name, atable);

    INSERT INTO pgmq.meta (queue_name, is_partitioned, is_unlogged)
    VALUES (_create_queue_tables.queue_name, false, unlogged)
    ON CONFLICT DO NOTHING;
END;
$$;

CREATE FUNCTION pgmq.create_non_partitioned(queue_name text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pgmq._create_queue_tables(queue_name, false);
END;
$$;

CREATE FUNCTION pgmq.create_unlogged(queue_name text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pgmq._create_queue_tables(queue_name, true);
END;
$$;

CREATE FUNCTION pgmq."create"(queue_name text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pgmq.create_non_partitioned(queue_name);
END;
$$;

CREATE FUNCTION pgmq.drop_queue(queue_name text)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    qtable pg_catalog.text := pgmq.format_table_name(queue_name, 'q');
    atable pg_catalog.text := pgmq.format_table_name(queue_name, 'a');
    partitioned boolean;
    partman_schema pg_catalog.text;
BEGIN
    PERFORM pgmq.acquire_queue_lock(queue_name);

    SELECT m.is_partitioned INTO partitioned
    FROM pgmq.meta m WHERE m.queue_name OPERATOR(pg_catalog.=) drop_queue.queue_name;

    IF NOT EXISTS (
        SELECT 1 FROM pg_catalog.pg_class c
        JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
        WHERE n.nspname OPERATOR(pg_catalog.=) 'pgmq' AND c.relname OPERATOR(pg_catalog.=) qtable
          AND c.relkind OPERATOR(pg_catalog.=) ANY ('{r,p,v,f}'::pg_catalog."char"[])
    ) THEN
        RAISE NOTICE 'pgmq queue `%` does not exist', queue_name;
        RETURN false;
    END IF;

    EXECUTE pg_catalog.format('DROP TABLE IF EXISTS pgmq.%I', qtable);
    EXECUTE pg_catalog.format('DROP TABLE IF EXISTS pgmq.%I', atable);
    PERFORM pgmq._forget_queue_plans(queue_name);

    DELETE FROM pgmq.meta m WHERE m.queue_name OPERATOR(pg_catalog.=) drop_queue.queue_name;

    IF partitioned THEN
        partman_schema := pgmq._get_pg_partman_schema();
        IF partman_schema IS NOT NULL THEN
            EXECUTE pg_catalog.format('DELETE FROM %I.part_config WHERE parent_table OPERATOR(pg_catalog.=) ANY (ARRAY[$1, $2])', partman_schema)
            USING 'pgmq.' OPERATOR(pg_catalog.||) qtable, 'pgmq.' OPERATOR(pg_catalog.||) atable;
        END IF;
    END IF;
    RETURN true;
END;
$$;

CREATE FUNCTION pgmq.drop_queue(queue_name text, partitioned boolean)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    RAISE WARNING 'drop_queue(queue_name, partitioned) is deprecated and will be removed in PGMQ v2.0. Use drop_queue(queue_name) instead';
    PERFORM pgmq.drop_queue(queue_name);
    RETURN true;
END;
$$;

CREATE FUNCTION pgmq.purge_queue(queue_name text)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    qtable pg_catalog.text := pgmq.format_table_name(queue_name, 'q');
    purged bigint;
BEGIN
    EXECUTE pg_catalog.format('SELECT pg_catalog.count(*) FROM pgmq.%I', qtable) INTO purged;
    EXECUTE pg_catalog.format('TRUNCATE TABLE pgmq.%I', qtable);
    RETURN purged;
END;
$$;

CREATE FUNCTION pgmq.detach_archive(queue_name text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pgmq.format_table_name(queue_name, 'a');
    RAISE WARNING 'detach_archive(queue_name) is deprecated and is a no-op. It will be removed in PGMQ v2.0. Archive tables are no longer member objects.';
END;
$$;

CREATE FUNCTION pgmq.list_queues()
RETURNS SETOF pgmq.queue_record LANGUAGE plpgsql AS $$
BEGIN
    RETURN QUERY SELECT m.queue_name, m.is_partitioned, m.is_unlogged, m.created_at FROM pgmq.meta m;
END;
$$;

---------------------------------------------------------------------------------------------------
-- Sending
---------------------------------------------------------------------------------------------------

-- pgmq._validate_batch_params is in Rust (src/queue/messages.rs), shared with send_batch.

---------------------------------------------------------------------------------------------------
-- Reading
---------------------------------------------------------------------------------------------------

-- pgmq._check_poll_args is in Rust (src/queue/wait.rs), shared with read_with_poll.

-- send, send_batch, _send_batch, read, read_with_poll, pop, archive, delete and set_vt are in
-- Rust (src/queue/messages.rs), with plans kept per queue.
--
-- The poll loop of the grouped *_with_poll functions: register as a waiter (src/queue/wake.rs),
-- read once per attempt with a fresh snapshot, return as soon as something was read, otherwise
-- sleep on the latch (pgmq._poll_wait) until the next attempt, the deadline, or a wake-up by a
-- transaction that committed messages to this queue.

---------------------------------------------------------------------------------------------------
-- FIFO / grouped reads. Group key: headers->>'x-pgmq-group', '_default_fifo_group' when absent.
---------------------------------------------------------------------------------------------------

-- SQS-FIFO style: fill the batch from as few groups as possible, oldest group first.
CREATE FUNCTION pgmq.read_grouped(queue_name text, vt integer, qty integer)
RETURNS SETOF pgmq.message_record LANGUAGE plpgsql AS $$
DECLARE
    qtable pg_catalog.text := pgmq.format_table_name(queue_name, 'q');
BEGIN
    RETURN QUERY EXECUTE pg_catalog.format(
        $q$
        WITH visible_heads AS (
            SELECT h.msg_id, COALESCE(h.headers OPERATOR(pg_catalog.->>) 'x-pgmq-group', '_default_fifo_group') AS grp
            FROM pgmq.%1$I h
            WHERE h.vt OPERATOR(pg_catalog.<=) pg_catalog.clock_timestamp()
              AND h.msg_id OPERATOR(pg_catalog.=) ANY (
                  SELECT DISTINCT ON (COALESCE(s.headers OPERATOR(pg_catalog.->>) 'x-pgmq-group', '_default_fifo_group')) s.msg_id
                  FROM pgmq.%1$I s
                  WHERE s.vt OPERATOR(pg_catalog.<=) pg_catalog.clock_timestamp()
                  ORDER BY COALESCE(s.headers OPERATOR(pg_catalog.->>) 'x-pgmq-group', '_default_fifo_group'), s.msg_id)
            FOR UPDATE SKIP LOCKED
        ),
        open_groups AS (
            SELECT vh.msg_id AS head_id, vh.grp
            FROM visible_heads vh
            WHERE NOT EXISTS (
                SELECT 1 FROM pgmq.%1$I e
                WHERE COALESCE(e.headers OPERATOR(pg_catalog.->>) 'x-pgmq-group', '_default_fifo_group') OPERATOR(pg_catalog.=) vh.grp
                  AND e.msg_id OPERATOR(pg_catalog.<) vh.msg_id
                  AND e.vt OPERATOR(pg_catalog.>) pg_catalog.clock_timestamp())
        ),
        chosen AS (
            SELECT m.msg_id
            FROM pgmq.%1$I m
            JOIN open_groups g ON COALESCE(m.headers OPERATOR(pg_catalog.->>) 'x-pgmq-group', '_default_fifo_group') OPERATOR(pg_catalog.=) g.grp
            WHERE m.vt OPERATOR(pg_catalog.<=) pg_catalog.clock_timestamp() AND m.msg_id OPERATOR(pg_catalog.>=) g.head_id
            ORDER BY g.head_id, m.msg_id
            LIMIT $2
        ),
        locked AS (
            SELECT l.msg_id FROM pgmq.%1$I l
            WHERE l.msg_id OPERATOR(pg_catalog.=) ANY (SELECT msg_id FROM chosen)
            FOR UPDATE SKIP LOCKED
        )
        UPDATE pgmq.%1$I m
        SET vt = pg_catalog.clock_timestamp() OPERATOR(pg_catalog.+) pg_catalog.make_interval(secs => $1),
            read_ct = m.read_ct OPERATOR(pg_catalog.+) 1,
            last_read_at = pg_catalog.clock_timestamp()
        FROM locked
        WHERE m.msg_id OPERATOR(pg_catalog.=) locked.msg_id
        RETURNING m.msg_id, m.read_ct, m.enqueued_at, m.last_read_at, m.vt, m.message, m.headers
        $q$, qtable)
    USING vt, qty;
END;
$$;

-- Layered round robin: the first message of every group, then the second of every group, ...
-- Group locks are taken by one statement and messages picked by the next, so the picking
-- statement's snapshot already shows everything committed by the groups' previous holders.
CREATE FUNCTION pgmq.read_grouped_rr(queue_name text, vt integer, qty integer)
RETURNS SETOF pgmq.message_record LANGUAGE plpgsql AS $$
DECLARE
    qtable pg_catalog.text := pgmq.format_table_name(queue_name, 'q');
    locked_groups pg_catalog.text[];
BEGIN
    EXECUTE pg_catalog.format(
        $q$
        SELECT coalesce(pg_catalog.array_agg(h.grp), '{}')
        FROM (SELECT DISTINCT ON (grp) msg_id, vt, grp
              FROM (SELECT s.msg_id, s.vt, COALESCE(s.headers OPERATOR(pg_catalog.->>) 'x-pgmq-group', '_default_fifo_group') AS grp
                    FROM pgmq.%1$I s) all_msgs
              ORDER BY grp, msg_id) h
        WHERE h.vt OPERATOR(pg_catalog.<=) pg_catalog.clock_timestamp()
          AND pg_catalog.pg_try_advisory_xact_lock(pg_catalog.hashtextextended(h.grp, 0))
        $q$, qtable)
    INTO locked_groups;
    IF pg_catalog.cardinality(locked_groups) OPERATOR(pg_catalog.=) 0 THEN
        RETURN;
    END IF;

    RETURN QUERY EXECUTE pg_catalog.format(
        $q$
        WITH heads AS (
            SELECT DISTINCT ON (grp) msg_id, vt, grp
            FROM (SELECT s.msg_id, s.vt, COALESCE(s.headers OPERATOR(pg_catalog.->>) 'x-pgmq-group', '_default_fifo_group') AS grp
                  FROM pgmq.%1$I s) all_msgs
            ORDER BY grp, msg_id
        ),
        open_groups AS (
            SELECT h.msg_id AS head_id, h.grp
            FROM heads h
            WHERE h.vt OPERATOR(pg_catalog.<=) pg_catalog.clock_timestamp() AND h.grp OPERATOR(pg_catalog.=) ANY($3)
        ),
        ranked AS (
            SELECT m.msg_id, g.head_id,
                   pg_catalog.row_number() OVER (PARTITION BY g.grp ORDER BY m.msg_id) AS pos
            FROM pgmq.%1$I m
            JOIN open_groups g ON COALESCE(m.headers OPERATOR(pg_catalog.->>) 'x-pgmq-group', '_default_fifo_group') OPERATOR(pg_catalog.=) g.grp
            WHERE m.vt OPERATOR(pg_catalog.<=) pg_catalog.clock_timestamp() AND m.msg_id OPERATOR(pg_catalog.>=) g.head_id
        ),
        chosen AS (
            SELECT r.msg_id, pg_catalog.row_number() OVER (ORDER BY r.pos, r.head_id) AS sel_order
            FROM ranked r
            ORDER BY r.pos, r.head_id
            LIMIT $2
        ),
        locked AS (
            SELECT l.msg_id, c.sel_order
            FROM pgmq.%1$I l JOIN chosen c ON c.msg_id OPERATOR(pg_catalog.=) l.msg_id
            FOR UPDATE OF l SKIP LOCKED
        ),
        updated AS (
            UPDATE pgmq.%1$I m
            SET vt = pg_catalog.clock_timestamp() OPERATOR(pg_catalog.+) pg_catalog.make_interval(secs => $1),
                read_ct = m.read_ct OPERATOR(pg_catalog.+) 1,
                last_read_at = pg_catalog.clock_timestamp()
            FROM locked
            WHERE m.msg_id OPERATOR(pg_catalog.=) locked.msg_id AND m.vt OPERATOR(pg_catalog.<=) pg_catalog.clock_timestamp()
            RETURNING m.msg_id, m.read_ct, m.enqueued_at, m.last_read_at, m.vt, m.message, m.headers,
                      locked.sel_order
        )
        SELECT u.msg_id, u.read_ct, u.enqueued_at, u.last_read_at, u.vt, u.message, u.headers
        FROM updated u ORDER BY u.sel_order
        $q$, qtable)
    USING vt, qty, locked_groups;
END;
$$;

-- At most one message per group: the groups' absolute heads that are visible.
CREATE FUNCTION pgmq.read_grouped_head(queue_name text, vt integer, qty integer)
RETURNS SETOF pgmq.message_record LANGUAGE plpgsql AS $$
DECLARE
    qtable pg_catalog.text := pgmq.format_table_name(queue_name, 'q');
BEGIN
    RETURN QUERY EXECUTE pg_catalog.format(
        $q$
        WITH heads AS (
            SELECT DISTINCT ON (COALESCE(s.headers OPERATOR(pg_catalog.->>) 'x-pgmq-group', '_default_fifo_group')) s.msg_id
            FROM pgmq.%1$I s
            ORDER BY COALESCE(s.headers OPERATOR(pg_catalog.->>) 'x-pgmq-group', '_default_fifo_group'), s.msg_id
        ),
        claimed AS (
            SELECT c.msg_id FROM pgmq.%1$I c
            WHERE c.msg_id OPERATOR(pg_catalog.=) ANY (SELECT msg_id FROM heads) AND c.vt OPERATOR(pg_catalog.<=) pg_catalog.clock_timestamp()
            ORDER BY c.msg_id
            LIMIT $2
            FOR UPDATE SKIP LOCKED
        )
        UPDATE pgmq.%1$I m
        SET vt = pg_catalog.clock_timestamp() OPERATOR(pg_catalog.+) pg_catalog.make_interval(secs => $1),
            read_ct = m.read_ct OPERATOR(pg_catalog.+) 1,
            last_read_at = pg_catalog.clock_timestamp()
        FROM claimed
        WHERE m.msg_id OPERATOR(pg_catalog.=) claimed.msg_id
        RETURNING m.msg_id, m.read_ct, m.enqueued_at, m.last_read_at, m.vt, m.message, m.headers
        $q$, qtable)
    USING vt, qty;
END;
$$;

-- The poll loop shared by the three grouped *_with_poll functions; `strategy` names the read.
CREATE FUNCTION pgmq._read_grouped_with_poll(
    strategy text, queue_name text, vt integer, qty integer, max_poll_seconds integer, poll_interval_ms integer)
RETURNS SETOF pgmq.message_record LANGUAGE plpgsql AS $$
DECLARE
    deadline pg_catalog.timestamptz := pg_catalog.clock_timestamp() OPERATOR(pg_catalog.+) pg_catalog.make_interval(secs => max_poll_seconds);
    got boolean;
BEGIN
    PERFORM pgmq._check_poll_args(max_poll_seconds, poll_interval_ms);
    PERFORM pgmq._poll_register(queue_name);
    LOOP
        EXIT WHEN pg_catalog.clock_timestamp() OPERATOR(pg_catalog.>=) deadline;
        -- An attempt that claims nothing is rolled back, releasing what it locked.
        got := false;
        BEGIN
            IF strategy OPERATOR(pg_catalog.=) 'rr' THEN
                RETURN QUERY SELECT * FROM pgmq.read_grouped_rr(queue_name, vt, qty);
            ELSIF strategy OPERATOR(pg_catalog.=) 'head' THEN
                RETURN QUERY SELECT * FROM pgmq.read_grouped_head(queue_name, vt, qty);
            ELSE
                RETURN QUERY SELECT * FROM pgmq.read_grouped(queue_name, vt, qty);
            END IF;
            got := FOUND;
            IF NOT got THEN
                RAISE SQLSTATE 'PGMQ0';
            END IF;
        EXCEPTION WHEN SQLSTATE 'PGMQ0' THEN
            NULL;
        END;
        EXIT WHEN got;
        PERFORM pgmq._poll_wait(queue_name, poll_interval_ms, deadline);
    END LOOP;
END;
$$;

CREATE FUNCTION pgmq.read_grouped_with_poll(
    queue_name text, vt integer, qty integer,
    max_poll_seconds integer DEFAULT 5, poll_interval_ms integer DEFAULT 100)
RETURNS SETOF pgmq.message_record LANGUAGE plpgsql AS $$
BEGIN
    RETURN QUERY SELECT * FROM pgmq._read_grouped_with_poll('fill', queue_name, vt, qty, max_poll_seconds, poll_interval_ms);
END;
$$;

CREATE FUNCTION pgmq.read_grouped_rr_with_poll(
    queue_name text, vt integer, qty integer,
    max_poll_seconds integer DEFAULT 5, poll_interval_ms integer DEFAULT 100)
RETURNS SETOF pgmq.message_record LANGUAGE plpgsql AS $$
BEGIN
    RETURN QUERY SELECT * FROM pgmq._read_grouped_with_poll('rr', queue_name, vt, qty, max_poll_seconds, poll_interval_ms);
END;
$$;

CREATE FUNCTION pgmq.read_grouped_head_with_poll(
    queue_name text, vt integer, qty integer,
    max_poll_seconds integer DEFAULT 5, poll_interval_ms integer DEFAULT 100)
RETURNS SETOF pgmq.message_record LANGUAGE plpgsql AS $$
BEGIN
    RETURN QUERY SELECT * FROM pgmq._read_grouped_with_poll('head', queue_name, vt, qty, max_poll_seconds, poll_interval_ms);
END;
$$;

CREATE FUNCTION pgmq._create_fifo_index_if_not_exists(queue_name text)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    qtable pg_catalog.text := pgmq.format_table_name(queue_name, 'q');
BEGIN
    EXECUTE pg_catalog.format('CREATE INDEX IF NOT EXISTS %I ON pgmq.%I USING GIN (headers)',
                   qtable OPERATOR(pg_catalog.||) '_fifo_idx', qtable);
END;
$$;

CREATE FUNCTION pgmq.create_fifo_index(queue_name text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pgmq._create_fifo_index_if_not_exists(queue_name);
END;
$$;

CREATE FUNCTION pgmq.create_fifo_indexes_all()
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    q pg_catalog.record;
BEGIN
    FOR q IN SELECT m.queue_name FROM pgmq.meta m ORDER BY m.queue_name LOOP
        PERFORM pgmq._create_fifo_index_if_not_exists(q.queue_name);
    END LOOP;
END;
$$;

---------------------------------------------------------------------------------------------------
-- Observability
---------------------------------------------------------------------------------------------------

CREATE FUNCTION pgmq.metrics(queue_name text)
RETURNS pgmq.metrics_result LANGUAGE plpgsql AS $$
DECLARE
    qtable pg_catalog.text := pgmq.format_table_name(queue_name, 'q');
    atable pg_catalog.text := pgmq.format_table_name(queue_name, 'a');
    result pgmq.metrics_result;
BEGIN
    EXECUTE pg_catalog.format(
        'SELECT $1::pg_catalog.text,
                pg_catalog.count(*),
                extract(epoch FROM pg_catalog.now() OPERATOR(pg_catalog.-) pg_catalog.max(enqueued_at))::integer,
                extract(epoch FROM pg_catalog.now() OPERATOR(pg_catalog.-) pg_catalog.min(enqueued_at))::integer,
                coalesce(pg_catalog.pg_sequence_last_value(%L::pg_catalog.regclass), 0),
                pg_catalog.now(),
                pg_catalog.count(*) FILTER (WHERE vt OPERATOR(pg_catalog.<=) pg_catalog.now()),
                NULL::bigint
         FROM pgmq.%I',
        pg_catalog.format('pgmq.%I', qtable OPERATOR(pg_catalog.||) '_msg_id_seq'), qtable)
    INTO result
    USING queue_name;

    IF pg_catalog.to_regclass(pg_catalog.format('pgmq.%I', qtable OPERATOR(pg_catalog.||) '_default')) IS NOT NULL THEN
        SELECT pg_catalog.sum(greatest(c.reltuples, 0))::bigint INTO result.default_partition_length
        FROM pg_catalog.pg_class c
        JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
        WHERE n.nspname OPERATOR(pg_catalog.=) 'pgmq'
          AND c.relname OPERATOR(pg_catalog.=) ANY (ARRAY[qtable OPERATOR(pg_catalog.||) '_default',
                                                          atable OPERATOR(pg_catalog.||) '_default']);
    END IF;
    RETURN result;
END;
$$;

CREATE FUNCTION pgmq.metrics_all()
RETURNS SETOF pgmq.metrics_result LANGUAGE plpgsql AS $$
DECLARE
    q pg_catalog.record;
BEGIN
    FOR q IN SELECT m.queue_name FROM pgmq.meta m LOOP
        RETURN NEXT pgmq.metrics(q.queue_name);
    END LOOP;
END;
$$;

---------------------------------------------------------------------------------------------------
-- Insert notifications (LISTEN/NOTIFY). Follows pgmq 1.13.1 for mixed-case names: the trigger
-- carries the stored queue name and notifies on pgmq.q_<queue name as stored>.INSERT.
---------------------------------------------------------------------------------------------------

CREATE FUNCTION pgmq.notify_queue_listeners()
RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    key pg_catalog.text;
    channel pg_catalog.text;
BEGIN
    IF TG_NARGS OPERATOR(pg_catalog.>) 0 THEN
        key := TG_ARGV[0];
        channel := 'pgmq.q_' OPERATOR(pg_catalog.||) key OPERATOR(pg_catalog.||) '.' OPERATOR(pg_catalog.||) TG_OP;
    ELSE
        key := pg_catalog.substr(TG_TABLE_NAME, 3);
        channel := 'pgmq.' OPERATOR(pg_catalog.||) TG_TABLE_NAME OPERATOR(pg_catalog.||) '.' OPERATOR(pg_catalog.||) TG_OP;
    END IF;

    UPDATE pgmq.notify_insert_throttle t
    SET last_notified_at = pg_catalog.clock_timestamp()
    WHERE t.queue_name OPERATOR(pg_catalog.=) key
      AND (t.throttle_interval_ms OPERATOR(pg_catalog.=) 0
           OR (pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) t.last_notified_at)
              OPERATOR(pg_catalog.>=) pg_catalog.make_interval(secs => t.throttle_interval_ms OPERATOR(pg_catalog./) 1000.0));
    IF FOUND THEN
        PERFORM pg_catalog.pg_notify(channel, NULL);
    END IF;
    RETURN NEW;
END;
$$;

CREATE FUNCTION pgmq.disable_notify_insert(queue_name text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE pg_catalog.format('DROP TRIGGER IF EXISTS trigger_notify_queue_insert_listeners ON pgmq.%I',
                   pgmq.format_table_name(queue_name, 'q'));
    DELETE FROM pgmq.notify_insert_throttle t WHERE t.queue_name OPERATOR(pg_catalog.=) disable_notify_insert.queue_name;
END;
$$;

CREATE FUNCTION pgmq.enable_notify_insert(queue_name text, throttle_interval_ms integer DEFAULT 250)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    qtable pg_catalog.text := pgmq.format_table_name(queue_name, 'q');
BEGIN
    IF throttle_interval_ms OPERATOR(pg_catalog.<) 0 THEN
        RAISE EXCEPTION 'throttle_interval_ms must be non-negative';
    END IF;
    IF NOT EXISTS (
        SELECT 1 FROM pg_catalog.pg_class c
        JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
        WHERE n.nspname OPERATOR(pg_catalog.=) 'pgmq' AND c.relname OPERATOR(pg_catalog.=) qtable
    ) THEN
        RAISE EXCEPTION 'Queue "%" does not exist. Create it first using pgmq.create()', queue_name;
    END IF;

    PERFORM pgmq.disable_notify_insert(queue_name);

    INSERT INTO pgmq.notify_insert_throttle AS t (queue_name, throttle_interval_ms, last_notified_at)
    VALUES (enable_notify_insert.queue_name, enable_notify_insert.throttle_interval_ms, pg_catalog.to_timestamp(0))
    ON CONFLICT ON CONSTRAINT notify_insert_throttle_queue_name_key DO UPDATE
    SET throttle_interval_ms = EXCLUDED.throttle_interval_ms,
        last_notified_at = pg_catalog.to_timestamp(0);

    EXECUTE pg_catalog.format(
        'CREATE CONSTRAINT TRIGGER trigger_notify_queue_insert_listeners
         AFTER INSERT ON pgmq.%I DEFERRABLE FOR EACH ROW
         EXECUTE PROCEDURE pgmq.notify_queue_listeners(%L)',
        qtable, queue_name);
END;
$$;

CREATE FUNCTION pgmq.update_notify_insert(queue_name text, throttle_interval_ms integer)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF throttle_interval_ms OPERATOR(pg_catalog.<) 0 THEN
        RAISE EXCEPTION 'throttle_interval_ms must be non-negative, got: %', throttle_interval_ms;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pgmq.meta m WHERE m.queue_name OPERATOR(pg_catalog.=) update_notify_insert.queue_name) THEN
        RAISE EXCEPTION 'Queue "%" does not exist. Create the queue first using pgmq.create()', queue_name;
    END IF;
    UPDATE pgmq.notify_insert_throttle t
    SET throttle_interval_ms = update_notify_insert.throttle_interval_ms,
        last_notified_at = pg_catalog.to_timestamp(0)
    WHERE t.queue_name OPERATOR(pg_catalog.=) update_notify_insert.queue_name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'Queue "%" does not have notify_insert enabled. Enable it first using pgmq.enable_notify_insert()', queue_name;
    END IF;
END;
$$;

CREATE FUNCTION pgmq.list_notify_insert_throttles()
RETURNS TABLE(queue_name text, throttle_interval_ms integer, last_notified_at timestamptz)
LANGUAGE sql STABLE AS $$
    SELECT t.queue_name::pg_catalog.text, t.throttle_interval_ms, t.last_notified_at
    FROM pgmq.notify_insert_throttle t
    ORDER BY t.queue_name;
$$;

---------------------------------------------------------------------------------------------------
-- Topics: routing-key fan-out. Keys and patterns are only ever compared, never spliced into SQL.
---------------------------------------------------------------------------------------------------

CREATE FUNCTION pgmq.validate_routing_key(routing_key text)
RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF routing_key IS NULL OR routing_key OPERATOR(pg_catalog.=) '' THEN
        RAISE EXCEPTION 'routing_key cannot be NULL or empty';
    END IF;
    IF pg_catalog.length(routing_key) OPERATOR(pg_catalog.>) 255 THEN
        RAISE EXCEPTION 'routing_key length cannot exceed 255 characters, got % characters', pg_catalog.length(routing_key);
    END IF;
    IF routing_key OPERATOR(pg_catalog.!~) '^[a-zA-Z0-9._-]+$' THEN
        RAISE EXCEPTION 'routing_key contains invalid characters. Only alphanumeric, dots, hyphens, and underscores are allowed. Got: %', routing_key;
    END IF;
    IF pg_catalog.left(routing_key, 1) OPERATOR(pg_catalog.=) '.' THEN
        RAISE EXCEPTION 'routing_key cannot start with a dot. Got: %', routing_key;
    END IF;
    IF pg_catalog.right(routing_key, 1) OPERATOR(pg_catalog.=) '.' THEN
        RAISE EXCEPTION 'routing_key cannot end with a dot. Got: %', routing_key;
    END IF;
    IF pg_catalog.strpos(routing_key, '..') OPERATOR(pg_catalog.>) 0 THEN
        RAISE EXCEPTION 'routing_key cannot contain consecutive dots. Got: %', routing_key;
    END IF;
    RETURN true;
END;
$$;

CREATE FUNCTION pgmq.validate_topic_pattern(pattern text)
RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF pattern IS NULL OR pattern OPERATOR(pg_catalog.=) '' THEN
        RAISE EXCEPTION 'pattern cannot be NULL or empty';
    END IF;
    IF pg_catalog.length(pattern) OPERATOR(pg_catalog.>) 255 THEN
        RAISE EXCEPTION 'pattern length cannot exceed 255 characters, got % characters', pg_catalog.length(pattern);
    END IF;
    IF pattern OPERATOR(pg_catalog.!~) '^[a-zA-Z0-9._*#-]+$' THEN
        RAISE EXCEPTION 'pattern contains invalid characters. Only alphanumeric, dots, hyphens, underscores, *, and # are allowed. Got: %', pattern;
    END IF;
    IF pg_catalog.left(pattern, 1) OPERATOR(pg_catalog.=) '.' THEN
        RAISE EXCEPTION 'pattern cannot start with a dot. Got: %', pattern;
    END IF;
    IF pg_catalog.right(pattern, 1) OPERATOR(pg_catalog.=) '.' THEN
        RAISE EXCEPTION 'pattern cannot end with a dot. Got: %', pattern;
    END IF;
    IF pg_catalog.strpos(pattern, '..') OPERATOR(pg_catalog.>) 0 THEN
        RAISE EXCEPTION 'pattern cannot contain consecutive dots. Got: %', pattern;
    END IF;
    IF pg_catalog.strpos(pattern, '**') OPERATOR(pg_catalog.>) 0 THEN
        RAISE EXCEPTION 'pattern cannot contain consecutive stars (**). Use # for multi-segment matching. Got: %', pattern;
    END IF;
    IF pg_catalog.strpos(pattern, '##') OPERATOR(pg_catalog.>) 0 THEN
        RAISE EXCEPTION 'pattern cannot contain consecutive hashes (##). A single # already matches zero or more segments. Got: %', pattern;
    END IF;
    IF pg_catalog.strpos(pattern, '*#') OPERATOR(pg_catalog.>) 0 OR pg_catalog.strpos(pattern, '#*') OPERATOR(pg_catalog.>) 0 THEN
        RAISE EXCEPTION 'pattern cannot contain adjacent wildcards (*# or #*). Separate wildcards with dots. Got: %', pattern;
    END IF;
    RETURN true;
END;
$$;

CREATE FUNCTION pgmq.bind_topic(pattern text, queue_name text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pgmq.validate_topic_pattern(pattern);
    IF queue_name IS NULL OR queue_name OPERATOR(pg_catalog.=) '' THEN
        RAISE EXCEPTION 'queue_name cannot be NULL or empty';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pgmq.meta m WHERE m.queue_name OPERATOR(pg_catalog.=) bind_topic.queue_name) THEN
        RAISE EXCEPTION 'Queue "%" does not exist. Create the queue first using pgmq.create()', queue_name;
    END IF;
    INSERT INTO pgmq.topic_bindings (pattern, queue_name)
    VALUES (bind_topic.pattern, bind_topic.queue_name)
    ON CONFLICT ON CONSTRAINT topic_bindings_unique_pattern_queue DO NOTHING;
END;
$$;

CREATE FUNCTION pgmq.unbind_topic(pattern text, queue_name text)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    IF pattern IS NULL OR pattern OPERATOR(pg_catalog.=) '' THEN
        RAISE EXCEPTION 'pattern cannot be NULL or empty';
    END IF;
    IF queue_name IS NULL OR queue_name OPERATOR(pg_catalog.=) '' THEN
        RAISE EXCEPTION 'queue_name cannot be NULL or empty';
    END IF;
    DELETE FROM pgmq.topic_bindings b
    WHERE b.pattern OPERATOR(pg_catalog.=) unbind_topic.pattern AND b.queue_name OPERATOR(pg_catalog.=) unbind_topic.queue_name;
    RETURN FOUND;
END;
$$;

CREATE FUNCTION pgmq.test_routing(routing_key text)
RETURNS TABLE(pattern text, queue_name text, compiled_regex text)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    PERFORM pgmq.validate_routing_key(routing_key);
    RETURN QUERY
        SELECT b.pattern, b.queue_name, b.compiled_regex
        FROM pgmq.topic_bindings b
        WHERE test_routing.routing_key OPERATOR(pg_catalog.~) b.compiled_regex
        ORDER BY b.pattern;
END;
$$;

CREATE FUNCTION pgmq.list_topic_bindings()
RETURNS TABLE(pattern text, queue_name text, bound_at timestamptz, compiled_regex text)
LANGUAGE sql STABLE AS $$
    SELECT b.pattern, b.queue_name, b.bound_at, b.compiled_regex
    FROM pgmq.topic_bindings b
    ORDER BY b.bound_at DESC, b.pattern, b.queue_name;
$$;

CREATE FUNCTION pgmq.list_topic_bindings(queue_name text)
RETURNS TABLE(pattern text, queue_name text, bound_at timestamptz, compiled_regex text)
LANGUAGE sql STABLE AS $$
    SELECT b.pattern, b.queue_name, b.bound_at, b.compiled_regex
    FROM pgmq.topic_bindings b
    WHERE b.queue_name OPERATOR(pg_catalog.=) $1
    ORDER BY b.bound_at DESC, b.pattern;
$$;

CREATE FUNCTION pgmq.send_topic(routing_key text, msg jsonb, headers jsonb, delay integer)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    target pg_catalog.record;
    matched integer := 0;
BEGIN
    PERFORM pgmq.validate_routing_key(routing_key);
    IF msg IS NULL THEN
        RAISE EXCEPTION 'msg cannot be NULL';
    END IF;
    IF delay OPERATOR(pg_catalog.<) 0 THEN
        RAISE EXCEPTION 'delay cannot be negative, got: %', delay;
    END IF;
    FOR target IN
        SELECT DISTINCT b.queue_name FROM pgmq.topic_bindings b
        WHERE send_topic.routing_key OPERATOR(pg_catalog.~) b.compiled_regex
        ORDER BY b.queue_name
    LOOP
        PERFORM pgmq.send(target.queue_name, msg, headers, delay);
        matched := matched OPERATOR(pg_catalog.+) 1;
    END LOOP;
    RETURN matched;
END;
$$;

CREATE FUNCTION pgmq.send_topic(routing_key text, msg jsonb)
RETURNS integer LANGUAGE sql AS $$
    SELECT pgmq.send_topic(routing_key, msg, NULL::pg_catalog.jsonb, 0);
$$;

CREATE FUNCTION pgmq.send_topic(routing_key text, msg jsonb, delay integer)
RETURNS integer LANGUAGE sql AS $$
    SELECT pgmq.send_topic(routing_key, msg, NULL::pg_catalog.jsonb, delay);
$$;

CREATE FUNCTION pgmq.send_batch_topic(routing_key text, msgs jsonb[], headers jsonb[], delay timestamptz)
RETURNS TABLE(queue_name text, msg_id bigint) LANGUAGE plpgsql AS $$
DECLARE
    target pg_catalog.record;
BEGIN
    PERFORM pgmq.validate_routing_key(routing_key);
    PERFORM pgmq._validate_batch_params(msgs, headers);
    FOR target IN
        SELECT DISTINCT b.queue_name AS name FROM pgmq.topic_bindings b
        WHERE send_batch_topic.routing_key OPERATOR(pg_catalog.~) b.compiled_regex
        ORDER BY b.queue_name
    LOOP
        RETURN QUERY
            SELECT target.name, sent.id
            FROM pgmq._send_batch(target.name, msgs, headers, delay) AS sent(id);
    END LOOP;
END;
$$;

CREATE FUNCTION pgmq.send_batch_topic(routing_key text, msgs jsonb[])
RETURNS TABLE(queue_name text, msg_id bigint) LANGUAGE sql AS $$
    SELECT * FROM pgmq.send_batch_topic(routing_key, msgs, NULL::pg_catalog.jsonb[], pg_catalog.clock_timestamp());
$$;

CREATE FUNCTION pgmq.send_batch_topic(routing_key text, msgs jsonb[], headers jsonb[])
RETURNS TABLE(queue_name text, msg_id bigint) LANGUAGE sql AS $$
    SELECT * FROM pgmq.send_batch_topic(routing_key, msgs, headers, pg_catalog.clock_timestamp());
$$;

CREATE FUNCTION pgmq.send_batch_topic(routing_key text, msgs jsonb[], delay integer)
RETURNS TABLE(queue_name text, msg_id bigint) LANGUAGE sql AS $$
    SELECT * FROM pgmq.send_batch_topic(routing_key, msgs, NULL::pg_catalog.jsonb[],
                                        pg_catalog.clock_timestamp() OPERATOR(pg_catalog.+) pg_catalog.make_interval(secs => delay));
$$;

CREATE FUNCTION pgmq.send_batch_topic(routing_key text, msgs jsonb[], delay timestamptz)
RETURNS TABLE(queue_name text, msg_id bigint) LANGUAGE sql AS $$
    SELECT * FROM pgmq.send_batch_topic(routing_key, msgs, NULL::pg_catalog.jsonb[], delay);
$$;

CREATE FUNCTION pgmq.send_batch_topic(routing_key text, msgs jsonb[], headers jsonb[], delay integer)
RETURNS TABLE(queue_name text, msg_id bigint) LANGUAGE sql AS $$
    SELECT * FROM pgmq.send_batch_topic(routing_key, msgs, headers,
                                        pg_catalog.clock_timestamp() OPERATOR(pg_catalog.+) pg_catalog.make_interval(secs => delay));
$$;

---------------------------------------------------------------------------------------------------
-- Partitioned queues (pg_partman)
---------------------------------------------------------------------------------------------------

CREATE FUNCTION pgmq._ensure_pg_partman_installed()
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF NOT pgmq._extension_exists('pg_partman') THEN
        RAISE EXCEPTION 'pg_partman is required for partitioned queues';
    END IF;
END;
$$;

CREATE FUNCTION pgmq._get_partition_col(partition_interval text)
RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    PERFORM partition_interval::integer;
    RETURN 'msg_id';
EXCEPTION WHEN others THEN
    RETURN 'enqueued_at';
END;
$$;

CREATE FUNCTION pgmq._get_pg_partman_major_version()
RETURNS integer LANGUAGE sql AS $$
    SELECT pg_catalog.split_part(extversion, '.', 1)::integer FROM pg_catalog.pg_extension WHERE extname OPERATOR(pg_catalog.=) 'pg_partman'
$$;

CREATE FUNCTION pgmq._get_pg_partman_schema()
RETURNS text LANGUAGE sql AS $$
    SELECT n.nspname::pg_catalog.text
    FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) e.extnamespace
    WHERE e.extname OPERATOR(pg_catalog.=) 'pg_partman'
$$;

-- Registers parent_table with pg_partman and sets its retention (shared by the partitioned paths).
CREATE FUNCTION pgmq._partman_register(
    parent_table text, control_col text, partition_interval text, premake integer,
    retention_interval text, keep_index boolean, infinite boolean)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    partman pg_catalog.text := pgmq._get_pg_partman_schema();
BEGIN
    EXECUTE pg_catalog.format(
        'SELECT %I.create_parent(p_parent_table => $1, p_control => $2, p_interval => $3, p_premake => $4, p_type => $5)',
        partman)
    USING parent_table, control_col, partition_interval, premake,
          CASE WHEN pgmq._get_pg_partman_major_version() OPERATOR(pg_catalog.=) 5 THEN 'range' ELSE 'native' END;
    EXECUTE pg_catalog.format(
        'UPDATE %I.part_config
         SET retention = $1, retention_keep_table = false, retention_keep_index = $2,
             automatic_maintenance = ''on'', infinite_time_partitions = infinite_time_partitions OR $3
         WHERE parent_table OPERATOR(pg_catalog.=) $4',
        partman)
    USING retention_interval, keep_index, infinite, parent_table;
END;
$$;

CREATE FUNCTION pgmq.create_partitioned(
    queue_name text, partition_interval text DEFAULT '10000',
    retention_interval text DEFAULT '100000', premake integer DEFAULT 4)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    qtable pg_catalog.text := pgmq.format_table_name(queue_name, 'q');
    atable pg_catalog.text := pgmq.format_table_name(queue_name, 'a');
    col pg_catalog.text;
    archive_col pg_catalog.text;
BEGIN
    PERFORM pgmq.validate_queue_name(queue_name);
    PERFORM pgmq._check_queue_name_bytes(queue_name);
    PERFORM pgmq.acquire_queue_lock(queue_name);
    PERFORM pgmq._ensure_pg_partman_installed();
    IF premake OPERATOR(pg_catalog.<) 1 THEN
        RAISE EXCEPTION 'premake must be at least 1, got %', premake;
    END IF;
    col := pgmq._get_partition_col(partition_interval);

    EXECUTE pg_catalog.format(
        'CREATE TABLE IF NOT EXISTS pgmq.%I (
            msg_id       bigint NOT NULL GENERATED BY DEFAULT AS IDENTITY,
            read_ct      integer NOT NULL DEFAULT 0,
            enqueued_at  pg_catalog.timestamptz NOT NULL DEFAULT pg_catalog.now(),
            last_read_at pg_catalog.timestamptz,
            vt           pg_catalog.timestamptz NOT NULL,
            message      pg_catalog.jsonb,
            headers      pg_catalog.jsonb) PARTITION BY RANGE (%I)',
        qtable, col);
    PERFORM pgmq._partman_register('pgmq.' OPERATOR(pg_catalog.||) qtable, col, partition_interval, premake,
                                   retention_interval, true, false);
    EXECUTE pg_catalog.format('CREATE INDEX IF NOT EXISTS %I ON pgmq.%I (%I)', qtable OPERATOR(pg_catalog.||) '_part_idx', qtable, col);
    EXECUTE pg_catalog.format('CREATE INDEX IF NOT EXISTS %I ON pgmq.%I (vt ASC)', qtable OPERATOR(pg_catalog.||) '_vt_idx', qtable);

    INSERT INTO pgmq.meta (queue_name, is_partitioned, is_unlogged)
    VALUES (create_partitioned.queue_name, true, false)
    ON CONFLICT DO NOTHING;

    archive_col := CASE WHEN col OPERATOR(pg_catalog.=) 'enqueued_at' THEN 'archived_at' ELSE 'msg_id' END;
    EXECUTE pg_catalog.format(
        'CREATE TABLE IF NOT EXISTS pgmq.%I (
            msg_id       bigint NOT NULL,
            read_ct      integer NOT NULL DEFAULT 0,
            enqueued_at  pg_catalog.timestamptz NOT NULL DEFAULT pg_catalog.now(),
            last_read_at pg_catalog.timestamptz,
            archived_at  pg_catalog.timestamptz NOT NULL DEFAULT pg_catalog.now(),
            vt           pg_catalog.timestamptz NOT NULL,
            message      pg_catalog.jsonb,
            headers      pg_catalog.jsonb) PARTITION BY RANGE (%I)',
        atable, archive_col);
    PERFORM pgmq._partman_register('pgmq.' OPERATOR(pg_catalog.||) atable, archive_col, partition_interval, premake,
                                   retention_interval, true, false);
    EXECUTE pg_catalog.format('CREATE INDEX IF NOT EXISTS %I ON pgmq.%I (archived_at)',
                   'archived_at_idx_' OPERATOR(pg_catalog.||) queue_name, atable);
END;
$$;

CREATE FUNCTION pgmq.convert_archive_partitioned(
    table_name text, partition_interval text DEFAULT '10000',
    retention_interval text DEFAULT '100000', leading_partition integer DEFAULT 10)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    atable pg_catalog.text := pgmq.format_table_name(table_name, 'a');
    col pg_catalog.text;
    kind pg_catalog."char";
BEGIN
    SELECT c.relkind INTO kind
    FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
    WHERE n.nspname OPERATOR(pg_catalog.=) 'pgmq' AND c.relname OPERATOR(pg_catalog.=) atable;

    IF kind OPERATOR(pg_catalog.=) 'p' THEN
        RAISE NOTICE 'Table %s is already partitioned', atable;
        RETURN;
    END IF;
    IF kind IS NULL OR kind OPERATOR(pg_catalog.<>) 'r' THEN
        RAISE NOTICE 'Table %s does not exists', atable;
        RETURN;
    END IF;
    PERFORM pgmq._ensure_pg_partman_installed();

    col := CASE WHEN pgmq._get_partition_col(partition_interval) OPERATOR(pg_catalog.=) 'msg_id' THEN 'msg_id' ELSE 'archived_at' END;
    EXECUTE pg_catalog.format('ALTER TABLE pgmq.%I RENAME TO %I', atable, atable OPERATOR(pg_catalog.||) '_old');
    EXECUTE pg_catalog.format(
        'CREATE TABLE pgmq.%I (LIKE pgmq.%I %s) PARTITION BY RANGE (%I)',
        atable, atable OPERATOR(pg_catalog.||) '_old',
        CASE WHEN col OPERATOR(pg_catalog.=) 'archived_at'
             THEN 'INCLUDING DEFAULTS INCLUDING GENERATED INCLUDING STORAGE INCLUDING COMMENTS'
             ELSE 'INCLUDING ALL' END,
        col);
    EXECUTE pg_catalog.format('ALTER INDEX pgmq.%I RENAME TO %I',
                   'archived_at_idx_' OPERATOR(pg_catalog.||) table_name, 'archived_at_idx_' OPERATOR(pg_catalog.||) table_name OPERATOR(pg_catalog.||) '_old');
    EXECUTE pg_catalog.format('CREATE INDEX %I ON pgmq.%I (archived_at)', 'archived_at_idx_' OPERATOR(pg_catalog.||) table_name, atable);
    PERFORM pgmq._partman_register('pgmq.' OPERATOR(pg_catalog.||) atable, col, partition_interval, 4,
                                   retention_interval, false, true);
END;
$$;
