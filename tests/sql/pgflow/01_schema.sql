-- pgflow schema objects: tables with column order, types, NOT NULL
-- and defaults; constraint names and definitions; indexes; the composite type; every function
-- with its exact signature, argument names, defaults, result, volatility, security, strictness and
-- search_path; schema privileges; no triggers, sequences or RLS.
BEGIN;
SELECT plan(56);
\ir helpers/common.psql

CREATE FUNCTION pg_temp.constraints(rel regclass) RETURNS TABLE(name text, type text, def text) LANGUAGE sql AS $$
    SELECT c.conname::text, c.contype::text, pg_get_constraintdef(c.oid) FROM pg_constraint c WHERE c.conrelid = rel
$$;

---------------------------------------------------------------------------------------------------
-- Schema, tables, type
---------------------------------------------------------------------------------------------------
SELECT has_schema('pgflow', 'schema pgflow exists');
-- Beyond the contract there are internal tables: _step_shards (map steps' countdown shards) and
-- those of steps run by the database (handlers, their queue, ad-hoc tasks, pools) and of run
-- control (cancelled and paused runs, flow and run options).
SELECT tables_are('pgflow',
    ARRAY['flows', 'steps', 'deps', 'runs', 'step_states', 'step_tasks', 'workers', 'worker_functions', '_step_shards',
          '_flow_owners', '_step_handlers', '_local_tasks', '_adhoc_tasks', '_pools', '_pool_slots', '_pool_assignments',
          '_run_control', '_flow_options', '_run_options', '_run_reruns', '_task_history', '_schedules'],
    'pgflow has the eight tables of section 1.2 and the internal ones');
SELECT is((SELECT count(*)::int FROM pg_class WHERE relnamespace = 'pgflow'::regnamespace AND relkind = 'S'), 0,
          'no sequences in schema pgflow');
SELECT is((SELECT count(*)::int FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
           WHERE c.relnamespace = 'pgflow'::regnamespace AND NOT t.tgisinternal), 0, 'no triggers on pgflow tables');
SELECT is((SELECT count(*)::int FROM pg_class WHERE relnamespace = 'pgflow'::regnamespace
           AND (relrowsecurity OR relforcerowsecurity)), 0, 'no row level security on pgflow tables');
SELECT is((SELECT count(*)::int FROM pg_class WHERE relnamespace = 'pgflow'::regnamespace
           AND relkind = 'r' AND relpersistence = 'p'), 22, 'all twenty-two tables are ordinary, permanent tables');
SELECT ok(NOT EXISTS (SELECT 1 FROM pg_namespace n, aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) a
                      WHERE n.nspname = 'pgflow' AND a.grantee = 0),
          'REVOKE ALL ON SCHEMA pgflow FROM PUBLIC: PUBLIC holds no privilege on the schema');
SELECT is((SELECT array_agg(a.grantee::regrole::text) FROM pg_namespace n, aclexplode(n.nspacl) a WHERE n.nspname = 'pgflow'),
          (SELECT ARRAY[nspowner::regrole::text, nspowner::regrole::text] FROM pg_namespace WHERE nspname = 'pgflow'),
          'no other grants on the schema: only the owner''s USAGE and CREATE');
SELECT ok(NOT EXISTS (SELECT 1 FROM pg_class WHERE relnamespace = 'pgflow'::regnamespace AND relacl IS NOT NULL)
          AND NOT EXISTS (SELECT 1 FROM pg_proc WHERE pronamespace = 'pgflow'::regnamespace AND proacl IS NOT NULL
                          AND NOT prosecdef),
          'no grants on pgflow tables or functions (SECURITY DEFINER ones: EXECUTE revoked from PUBLIC, see 17_privileges)');

SELECT results_eq(
    $$SELECT name, type FROM pg_temp.cols('pgflow.step_task_record')$$,
    $$VALUES ('flow_slug', 'text'), ('run_id', 'uuid'), ('step_slug', 'text'), ('input', 'jsonb'),
             ('msg_id', 'bigint'), ('task_index', 'integer'), ('flow_input', 'jsonb')$$,
    'composite type pgflow.step_task_record: 7 attributes in order');
SELECT is((SELECT typtype::text FROM pg_type WHERE oid = 'pgflow.step_task_record'::regtype), 'c',
          'step_task_record is a standalone composite type');

---------------------------------------------------------------------------------------------------
-- Columns (order, type, NOT NULL, default)
---------------------------------------------------------------------------------------------------
SELECT results_eq($$SELECT * FROM pg_temp.cols('pgflow.flows')$$,
    $$VALUES ('flow_slug', 'text', true, NULL::text),
             ('opt_max_attempts', 'integer', true, '3'),
             ('opt_base_delay', 'integer', true, '1'),
             ('opt_timeout', 'integer', true, '60'),
             ('created_at', 'timestamp with time zone', true, 'now()')$$,
    'flows columns');
SELECT results_eq($$SELECT * FROM pg_temp.cols('pgflow.steps')$$,
    $$VALUES ('flow_slug', 'text', true, NULL::text),
             ('step_slug', 'text', true, NULL),
             ('step_type', 'text', true, '''single''::text'),
             ('step_index', 'integer', true, '0'),
             ('deps_count', 'integer', true, '0'),
             ('opt_max_attempts', 'integer', false, NULL),
             ('opt_base_delay', 'integer', false, NULL),
             ('opt_timeout', 'integer', false, NULL),
             ('created_at', 'timestamp with time zone', true, 'now()'),
             ('opt_start_delay', 'integer', false, NULL),
             ('required_input_pattern', 'jsonb', false, NULL),
             ('forbidden_input_pattern', 'jsonb', false, NULL),
             ('when_unmet', 'text', true, '''skip''::text'),
             ('when_exhausted', 'text', true, '''fail''::text')$$,
    'steps columns');
SELECT results_eq($$SELECT * FROM pg_temp.cols('pgflow.deps')$$,
    $$VALUES ('flow_slug', 'text', true, NULL::text),
             ('dep_slug', 'text', true, NULL),
             ('step_slug', 'text', true, NULL),
             ('created_at', 'timestamp with time zone', true, 'now()')$$,
    'deps columns');
SELECT results_eq($$SELECT * FROM pg_temp.cols('pgflow.runs')$$,
    $$VALUES ('run_id', 'uuid', true, 'gen_random_uuid()'),
             ('flow_slug', 'text', true, NULL),
             ('status', 'text', true, '''started''::text'),
             ('input', 'jsonb', true, NULL),
             ('output', 'jsonb', false, NULL),
             ('remaining_steps', 'integer', true, '0'),
             ('started_at', 'timestamp with time zone', true, 'now()'),
             ('completed_at', 'timestamp with time zone', false, NULL),
             ('failed_at', 'timestamp with time zone', false, NULL)$$,
    'runs columns');
SELECT results_eq($$SELECT * FROM pg_temp.cols('pgflow.step_states')$$,
    $$VALUES ('flow_slug', 'text', true, NULL::text),
             ('run_id', 'uuid', true, NULL),
             ('step_slug', 'text', true, NULL),
             ('status', 'text', true, '''created''::text'),
             ('remaining_tasks', 'integer', false, NULL),
             ('remaining_deps', 'integer', true, '0'),
             ('created_at', 'timestamp with time zone', true, 'now()'),
             ('started_at', 'timestamp with time zone', false, NULL),
             ('completed_at', 'timestamp with time zone', false, NULL),
             ('failed_at', 'timestamp with time zone', false, NULL),
             ('error_message', 'text', false, NULL),
             ('initial_tasks', 'integer', false, NULL),
             ('output', 'jsonb', false, NULL),
             ('skip_reason', 'text', false, NULL),
             ('skipped_at', 'timestamp with time zone', false, NULL)$$,
    'step_states columns');
SELECT results_eq($$SELECT * FROM pg_temp.cols('pgflow.step_tasks')$$,
    $$VALUES ('flow_slug', 'text', true, NULL::text),
             ('run_id', 'uuid', true, NULL),
             ('step_slug', 'text', true, NULL),
             ('message_id', 'bigint', false, NULL),
             ('task_index', 'integer', true, '0'),
             ('status', 'text', true, '''queued''::text'),
             ('attempts_count', 'integer', true, '0'),
             ('error_message', 'text', false, NULL),
             ('output', 'jsonb', false, NULL),
             ('queued_at', 'timestamp with time zone', true, 'now()'),
             ('completed_at', 'timestamp with time zone', false, NULL),
             ('failed_at', 'timestamp with time zone', false, NULL),
             ('started_at', 'timestamp with time zone', false, NULL),
             ('last_worker_id', 'uuid', false, NULL),
             ('requeued_count', 'integer', true, '0'),
             ('last_requeued_at', 'timestamp with time zone', false, NULL),
             ('permanently_stalled_at', 'timestamp with time zone', false, NULL)$$,
    'step_tasks columns');
SELECT results_eq($$SELECT * FROM pg_temp.cols('pgflow.workers')$$,
    $$VALUES ('worker_id', 'uuid', true, NULL::text),
             ('queue_name', 'text', true, NULL),
             ('function_name', 'text', true, NULL),
             ('started_at', 'timestamp with time zone', true, 'now()'),
             ('deprecated_at', 'timestamp with time zone', false, NULL),
             ('last_heartbeat_at', 'timestamp with time zone', true, 'now()'),
             ('stopped_at', 'timestamp with time zone', false, NULL)$$,
    'workers columns');
SELECT results_eq($$SELECT * FROM pg_temp.cols('pgflow.worker_functions')$$,
    $$VALUES ('function_name', 'text', true, NULL::text),
             ('enabled', 'boolean', true, 'true'),
             ('debounce', 'interval', true, '''00:00:06''::interval'),
             ('last_invoked_at', 'timestamp with time zone', false, NULL),
             ('created_at', 'timestamp with time zone', true, 'now()'),
             ('updated_at', 'timestamp with time zone', true, 'now()')$$,
    'worker_functions columns');

---------------------------------------------------------------------------------------------------
-- Constraints (names, kinds, definitions)
---------------------------------------------------------------------------------------------------
SELECT set_eq($$SELECT * FROM pg_temp.constraints('pgflow.flows')$$,
    $$VALUES ('flows_pkey', 'p', 'PRIMARY KEY (flow_slug)'),
             ('slug_is_valid', 'c', 'CHECK (pgflow.is_valid_slug(flow_slug))'),
             ('opt_max_attempts_is_nonnegative', 'c', 'CHECK ((opt_max_attempts >= 0))'),
             ('opt_base_delay_is_nonnegative', 'c', 'CHECK ((opt_base_delay >= 0))'),
             ('opt_timeout_is_positive', 'c', 'CHECK ((opt_timeout > 0))')$$,
    'flows constraints');
SELECT set_eq($$SELECT * FROM pg_temp.constraints('pgflow.steps')$$,
    $$VALUES ('steps_pkey', 'p', 'PRIMARY KEY (flow_slug, step_slug)'),
             ('steps_flow_slug_step_index_key', 'u', 'UNIQUE (flow_slug, step_index)'),
             ('steps_flow_slug_fkey', 'f', 'FOREIGN KEY (flow_slug) REFERENCES pgflow.flows(flow_slug)'),
             ('steps_step_slug_check', 'c', 'CHECK (pgflow.is_valid_slug(step_slug))'),
             ('steps_step_type_check', 'c', 'CHECK ((step_type = ANY (ARRAY[''single''::text, ''map''::text])))'),
             ('steps_deps_count_check', 'c', 'CHECK ((deps_count >= 0))'),
             ('opt_max_attempts_is_nonnegative', 'c', 'CHECK (((opt_max_attempts IS NULL) OR (opt_max_attempts >= 0)))'),
             ('opt_base_delay_is_nonnegative', 'c', 'CHECK (((opt_base_delay IS NULL) OR (opt_base_delay >= 0)))'),
             ('opt_timeout_is_positive', 'c', 'CHECK (((opt_timeout IS NULL) OR (opt_timeout > 0)))'),
             ('opt_start_delay_is_nonnegative', 'c', 'CHECK (((opt_start_delay IS NULL) OR (opt_start_delay >= 0)))'),
             ('required_input_pattern_is_object', 'c',
              'CHECK (((required_input_pattern IS NULL) OR (jsonb_typeof(required_input_pattern) = ''object''::text)))'),
             ('forbidden_input_pattern_is_object', 'c',
              'CHECK (((forbidden_input_pattern IS NULL) OR (jsonb_typeof(forbidden_input_pattern) = ''object''::text)))'),
             ('when_unmet_is_valid', 'c',
              'CHECK ((when_unmet = ANY (ARRAY[''fail''::text, ''skip''::text, ''skip-cascade''::text])))'),
             ('when_exhausted_is_valid', 'c',
              'CHECK ((when_exhausted = ANY (ARRAY[''fail''::text, ''skip''::text, ''skip-cascade''::text])))')$$,
    'steps constraints');
SELECT set_eq($$SELECT * FROM pg_temp.constraints('pgflow.deps')$$,
    $$VALUES ('deps_pkey', 'p', 'PRIMARY KEY (flow_slug, dep_slug, step_slug)'),
             ('deps_flow_slug_fkey', 'f', 'FOREIGN KEY (flow_slug) REFERENCES pgflow.flows(flow_slug)'),
             ('deps_flow_slug_dep_slug_fkey', 'f',
              'FOREIGN KEY (flow_slug, dep_slug) REFERENCES pgflow.steps(flow_slug, step_slug)'),
             ('deps_flow_slug_step_slug_fkey', 'f',
              'FOREIGN KEY (flow_slug, step_slug) REFERENCES pgflow.steps(flow_slug, step_slug)'),
             ('deps_check', 'c', 'CHECK ((dep_slug <> step_slug))')$$,
    'deps constraints');
SELECT set_eq($$SELECT * FROM pg_temp.constraints('pgflow.runs')$$,
    $$VALUES ('runs_pkey', 'p', 'PRIMARY KEY (run_id)'),
             ('runs_flow_slug_fkey', 'f', 'FOREIGN KEY (flow_slug) REFERENCES pgflow.flows(flow_slug)'),
             ('runs_remaining_steps_check', 'c', 'CHECK ((remaining_steps >= 0))'),
             ('status_is_valid', 'c', 'CHECK ((status = ANY (ARRAY[''started''::text, ''failed''::text, ''completed''::text])))'),
             ('completed_at_or_failed_at', 'c', 'CHECK ((NOT ((completed_at IS NOT NULL) AND (failed_at IS NOT NULL))))'),
             ('completed_at_is_after_started_at', 'c', 'CHECK (((completed_at IS NULL) OR (completed_at >= started_at)))'),
             ('failed_at_is_after_started_at', 'c', 'CHECK (((failed_at IS NULL) OR (failed_at >= started_at)))')$$,
    'runs constraints');
-- The "at most one terminal timestamp" check has no prescribed text: its name is checked here,
-- its behaviour further below.
SELECT set_eq($$SELECT name, type, CASE WHEN name = 'completed_at_or_failed_at_or_skipped_at' THEN '-' ELSE def END
                FROM pg_temp.constraints('pgflow.step_states')$$,
    $$VALUES ('step_states_pkey', 'p', 'PRIMARY KEY (run_id, step_slug)'),
             ('step_states_flow_slug_fkey', 'f', 'FOREIGN KEY (flow_slug) REFERENCES pgflow.flows(flow_slug)'),
             ('step_states_run_id_fkey', 'f', 'FOREIGN KEY (run_id) REFERENCES pgflow.runs(run_id)'),
             ('step_states_flow_slug_step_slug_fkey', 'f',
              'FOREIGN KEY (flow_slug, step_slug) REFERENCES pgflow.steps(flow_slug, step_slug)'),
             ('status_is_valid', 'c',
              'CHECK ((status = ANY (ARRAY[''created''::text, ''started''::text, ''completed''::text, ''failed''::text, ''skipped''::text])))'),
             ('status_and_remaining_tasks_match', 'c', 'CHECK (((status <> ''completed''::text) OR (remaining_tasks = 0)))'),
             ('remaining_tasks_state_consistency', 'c',
              'CHECK (((remaining_tasks IS NULL) OR (status <> ALL (ARRAY[''created''::text, ''skipped''::text]))))'),
             ('initial_tasks_known_when_started', 'c', 'CHECK (((status <> ''started''::text) OR (initial_tasks IS NOT NULL)))'),
             ('step_states_initial_tasks_check', 'c', 'CHECK (((initial_tasks IS NULL) OR (initial_tasks >= 0)))'),
             ('step_states_remaining_deps_check', 'c', 'CHECK ((remaining_deps >= 0))'),
             ('output_only_for_completed_or_null', 'c', 'CHECK (((output IS NULL) OR (status = ''completed''::text)))'),
             ('skip_reason_matches_status', 'c',
              'CHECK ((((status = ''skipped''::text) AND (skip_reason IS NOT NULL)) OR ((status <> ''skipped''::text) AND (skip_reason IS NULL))))'),
             ('completed_at_or_failed_at_or_skipped_at', 'c', '-'),
             ('started_at_is_after_created_at', 'c', 'CHECK (((started_at IS NULL) OR (started_at >= created_at)))'),
             ('completed_at_is_after_started_at', 'c', 'CHECK (((completed_at IS NULL) OR (completed_at >= started_at)))'),
             ('failed_at_is_after_started_at', 'c', 'CHECK (((failed_at IS NULL) OR (failed_at >= started_at)))'),
             ('skipped_at_is_after_created_at', 'c', 'CHECK (((skipped_at IS NULL) OR (skipped_at >= created_at)))')$$,
    'step_states constraints');
SELECT set_eq($$SELECT * FROM pg_temp.constraints('pgflow.step_tasks')$$,
    $$VALUES ('step_tasks_pkey', 'p', 'PRIMARY KEY (run_id, step_slug, task_index)'),
             ('step_tasks_flow_slug_fkey', 'f', 'FOREIGN KEY (flow_slug) REFERENCES pgflow.flows(flow_slug)'),
             ('step_tasks_run_id_fkey', 'f', 'FOREIGN KEY (run_id) REFERENCES pgflow.runs(run_id)'),
             ('step_tasks_run_id_step_slug_fkey', 'f',
              'FOREIGN KEY (run_id, step_slug) REFERENCES pgflow.step_states(run_id, step_slug)'),
             ('step_tasks_last_worker_id_fkey', 'f',
              'FOREIGN KEY (last_worker_id) REFERENCES pgflow.workers(worker_id) ON DELETE SET NULL'),
             ('valid_status', 'c',
              'CHECK ((status = ANY (ARRAY[''queued''::text, ''started''::text, ''completed''::text, ''failed''::text])))'),
             ('output_valid_only_for_completed', 'c',
              'CHECK (((output IS NULL) OR (status = ANY (ARRAY[''completed''::text, ''failed''::text]))))'),
             ('attempts_count_nonnegative', 'c', 'CHECK ((attempts_count >= 0))'),
             ('completed_at_or_failed_at', 'c', 'CHECK ((NOT ((completed_at IS NOT NULL) AND (failed_at IS NOT NULL))))'),
             ('completed_at_is_after_queued_at', 'c', 'CHECK (((completed_at IS NULL) OR (completed_at >= queued_at)))'),
             ('failed_at_is_after_queued_at', 'c', 'CHECK (((failed_at IS NULL) OR (failed_at >= queued_at)))'),
             ('started_at_is_after_queued_at', 'c', 'CHECK (((started_at IS NULL) OR (started_at >= queued_at)))'),
             ('completed_at_is_after_started_at', 'c',
              'CHECK (((completed_at IS NULL) OR (started_at IS NULL) OR (completed_at >= started_at)))'),
             ('failed_at_is_after_started_at', 'c',
              'CHECK (((failed_at IS NULL) OR (started_at IS NULL) OR (failed_at >= started_at)))')$$,
    'step_tasks constraints');
SELECT set_eq($$SELECT * FROM pg_temp.constraints('pgflow.workers')$$,
    $$VALUES ('workers_pkey', 'p', 'PRIMARY KEY (worker_id)')$$, 'workers constraints');
SELECT set_eq($$SELECT * FROM pg_temp.constraints('pgflow.worker_functions')$$,
    $$VALUES ('worker_functions_pkey', 'p', 'PRIMARY KEY (function_name)'),
             ('worker_functions_debounce_check', 'c', 'CHECK ((debounce >= ''00:00:01''::interval))')$$,
    'worker_functions constraints');
SELECT is((SELECT count(*)::int FROM pg_constraint WHERE connamespace = 'pgflow'::regnamespace AND condeferrable), 0,
          'no constraint is deferrable (FKs are checked at end of statement)');

---------------------------------------------------------------------------------------------------
-- Indexes
---------------------------------------------------------------------------------------------------
SELECT set_eq($$SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
                JOIN pg_class c2 ON c2.oid = i.indexrelid
                WHERE c.relnamespace = 'pgflow'::regnamespace AND NOT i.indisunique AND c.relname NOT LIKE '\_%'
                  AND c2.relname NOT IN ('idx_step_tasks_flow_completed', 'idx_step_tasks_flow_failed')$$,
    ARRAY[
      'CREATE INDEX idx_deps_by_flow_dep ON pgflow.deps USING btree (flow_slug, dep_slug)',
      'CREATE INDEX idx_deps_by_flow_step ON pgflow.deps USING btree (flow_slug, step_slug)',
      'CREATE INDEX idx_runs_flow_slug ON pgflow.runs USING btree (flow_slug)',
      'CREATE INDEX idx_runs_status ON pgflow.runs USING btree (status)',
      'CREATE INDEX idx_step_states_ready ON pgflow.step_states USING btree (run_id, status, remaining_deps) WHERE ((status = ''created''::text) AND (remaining_deps = 0))',
      'CREATE INDEX idx_step_states_failed ON pgflow.step_states USING btree (run_id, step_slug) WHERE (status = ''failed''::text)',
      'CREATE INDEX idx_step_states_skipped ON pgflow.step_states USING btree (run_id, step_slug) WHERE (status = ''skipped''::text)',
      'CREATE INDEX idx_step_states_flow_slug ON pgflow.step_states USING btree (flow_slug)',
      'CREATE INDEX idx_step_states_run_id ON pgflow.step_states USING btree (run_id)',
      'CREATE INDEX idx_step_tasks_message_id ON pgflow.step_tasks USING btree (message_id)',
      'CREATE INDEX idx_step_tasks_queued ON pgflow.step_tasks USING btree (run_id, step_slug) WHERE (status = ''queued''::text)',
      'CREATE INDEX idx_step_tasks_completed ON pgflow.step_tasks USING btree (run_id, step_slug) WHERE (status = ''completed''::text)',
      'CREATE INDEX idx_step_tasks_failed ON pgflow.step_tasks USING btree (run_id, step_slug) WHERE (status = ''failed''::text)',
      'CREATE INDEX idx_step_tasks_flow_run_step ON pgflow.step_tasks USING btree (flow_slug, run_id, step_slug)',
      'CREATE INDEX idx_step_tasks_started ON pgflow.step_tasks USING btree (started_at) WHERE (status = ''started''::text)',
      'CREATE INDEX idx_step_tasks_queued_msg ON pgflow.step_tasks USING btree (message_id) WHERE (status = ''queued''::text)',
      'CREATE INDEX idx_step_tasks_last_worker ON pgflow.step_tasks USING btree (last_worker_id) WHERE (status = ''started''::text)',
      'CREATE INDEX idx_workers_queue_name ON pgflow.workers USING btree (queue_name)',
      'CREATE INDEX idx_workers_heartbeat ON pgflow.workers USING btree (last_heartbeat_at)'],
    'the 19 non-unique btree indexes of section 1.3, with their columns and predicates');
SELECT set_eq($$SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
                WHERE c.relnamespace = 'pgflow'::regnamespace AND i.indisunique AND c.relname NOT LIKE '\_%'$$,
    ARRAY[
      'CREATE UNIQUE INDEX deps_pkey ON pgflow.deps USING btree (flow_slug, dep_slug, step_slug)',
      'CREATE UNIQUE INDEX flows_pkey ON pgflow.flows USING btree (flow_slug)',
      'CREATE UNIQUE INDEX runs_pkey ON pgflow.runs USING btree (run_id)',
      'CREATE UNIQUE INDEX step_states_pkey ON pgflow.step_states USING btree (run_id, step_slug)',
      'CREATE UNIQUE INDEX step_tasks_pkey ON pgflow.step_tasks USING btree (run_id, step_slug, task_index)',
      'CREATE UNIQUE INDEX steps_flow_slug_step_index_key ON pgflow.steps USING btree (flow_slug, step_index)',
      'CREATE UNIQUE INDEX steps_pkey ON pgflow.steps USING btree (flow_slug, step_slug)',
      'CREATE UNIQUE INDEX worker_functions_pkey ON pgflow.worker_functions USING btree (function_name)',
      'CREATE UNIQUE INDEX workers_pkey ON pgflow.workers USING btree (worker_id)'],
    'exactly the nine unique indexes (primary keys and steps_flow_slug_step_index_key)');

---------------------------------------------------------------------------------------------------
-- Functions
---------------------------------------------------------------------------------------------------
CREATE TEMP TABLE expected_functions (name text, signature text, vol text, secdef boolean, parallel text, config text);
INSERT INTO expected_functions VALUES
  ('is_local', 'is_local() -> boolean', 's', false, 's', 'search_path=""'),
  ('is_valid_slug', 'is_valid_slug(slug text) -> boolean', 'i', false, 'u', 'search_path=""'),
  ('calculate_retry_delay', 'calculate_retry_delay(base_delay numeric, attempts_count integer) -> integer', 'i', false, 's', 'search_path=""'),
  ('create_flow', 'create_flow(flow_slug text, max_attempts integer DEFAULT NULL::integer, base_delay integer DEFAULT NULL::integer, timeout integer DEFAULT NULL::integer) -> pgflow.flows', 'v', false, 'u', 'search_path=""'),
  ('add_step', 'add_step(flow_slug text, step_slug text, deps_slugs text[] DEFAULT ''{}''::text[], max_attempts integer DEFAULT NULL::integer, base_delay integer DEFAULT NULL::integer, timeout integer DEFAULT NULL::integer, start_delay integer DEFAULT NULL::integer, step_type text DEFAULT ''single''::text, required_input_pattern jsonb DEFAULT NULL::jsonb, forbidden_input_pattern jsonb DEFAULT NULL::jsonb, when_unmet text DEFAULT ''skip''::text, when_exhausted text DEFAULT ''fail''::text) -> pgflow.steps', 'v', false, 'u', 'search_path=""'),
  ('start_flow', 'start_flow(flow_slug text, input jsonb, run_id uuid DEFAULT NULL::uuid) -> SETOF pgflow.runs', 'v', false, 'u', 'search_path=""'),
  -- Deliberate deviation: the contract gives these SECURITY DEFINER functions no search_path;
  -- we pin it to '' so that a caller's search_path cannot run code as the definer.
  ('start_flow_with_states', 'start_flow_with_states(flow_slug text, input jsonb, run_id uuid DEFAULT NULL::uuid) -> jsonb', 'v', true, 'u', 'search_path=""'),
  ('get_run_with_states', 'get_run_with_states(run_id uuid) -> jsonb', 'v', true, 'u', 'search_path=""'),
  ('start_ready_steps', 'start_ready_steps(run_id uuid) -> void', 'v', false, 'u', 'search_path=""'),
  ('cascade_resolve_conditions', 'cascade_resolve_conditions(run_id uuid) -> boolean', 'v', false, 'u', 'search_path=""'),
  ('cascade_complete_taskless_steps', 'cascade_complete_taskless_steps(run_id uuid) -> integer', 'v', false, 'u', ''),
  ('_cascade_force_skip_steps', '_cascade_force_skip_steps(run_id uuid, step_slug text, skip_reason text) -> integer', 'v', false, 'u', ''),
  ('start_tasks', 'start_tasks(flow_slug text, msg_ids bigint[], worker_id uuid) -> SETOF pgflow.step_task_record', 'v', false, 'u', 'search_path=""'),
  ('complete_task', 'complete_task(run_id uuid, step_slug text, task_index integer, output jsonb) -> SETOF pgflow.step_tasks', 'v', false, 'u', 'search_path=""'),
  ('fail_task', 'fail_task(run_id uuid, step_slug text, task_index integer, error_message text) -> SETOF pgflow.step_tasks', 'v', false, 'u', 'search_path=""'),
  ('maybe_complete_run', 'maybe_complete_run(run_id uuid) -> void', 'v', false, 'u', 'search_path=""'),
  ('_archive_task_message', '_archive_task_message(p_run_id uuid, p_step_slug text, p_task_index integer) -> void', 'v', false, 'u', 'search_path=""'),
  ('set_vt_batch', 'set_vt_batch(queue_name text, msg_ids bigint[], vt_offsets integer[]) -> TABLE(msg_id bigint, read_ct integer, enqueued_at timestamp with time zone, vt timestamp with time zone, message jsonb, headers jsonb)', 'v', false, 'u', ''),
  ('poll_for_tasks', 'poll_for_tasks(queue_name text, vt integer, qty integer, max_poll_seconds integer DEFAULT 5, poll_interval_ms integer DEFAULT 100) -> SETOF pgflow.step_task_record', 'v', false, 'u', 'search_path=""'),
  ('_get_flow_shape', '_get_flow_shape(p_flow_slug text) -> jsonb', 's', false, 'u', 'search_path=""'),
  ('_compare_flow_shapes', '_compare_flow_shapes(p_local jsonb, p_db jsonb) -> text[]', 's', false, 'u', 'search_path=""'),
  ('_create_flow_from_shape', '_create_flow_from_shape(p_flow_slug text, p_shape jsonb) -> void', 'v', false, 'u', 'search_path=""'),
  ('ensure_flow_compiled', 'ensure_flow_compiled(flow_slug text, shape jsonb, allow_data_loss boolean DEFAULT false) -> jsonb', 'v', false, 'u', 'search_path=""'),
  ('delete_flow_and_data', 'delete_flow_and_data(p_flow_slug text) -> void', 'v', false, 'u', 'search_path=""'),
  ('requeue_stalled_tasks', 'requeue_stalled_tasks() -> integer', 'v', true, 'u', 'search_path=""'),
  ('setup_requeue_stalled_tasks_cron', 'setup_requeue_stalled_tasks_cron(cron_interval text DEFAULT ''15 seconds''::text) -> text', 'v', true, 'u', 'search_path=pgflow, cron, pg_temp'),
  ('track_worker_function', 'track_worker_function(function_name text) -> void', 'v', false, 'u', ''),
  ('mark_worker_stopped', 'mark_worker_stopped(worker_id uuid) -> void', 'v', false, 'u', ''),
  ('ensure_workers', 'ensure_workers() -> TABLE(function_name text, invoked boolean, request_id bigint)', 'v', false, 'u', ''),
  ('cleanup_ensure_workers_logs', 'cleanup_ensure_workers_logs(retention_hours integer DEFAULT 24) -> TABLE(cron_deleted bigint)', 'v', true, 'u', 'search_path=pgflow, cron, pg_temp'),
  ('setup_ensure_workers_cron', 'setup_ensure_workers_cron(cron_interval text DEFAULT ''1 second''::text) -> text', 'v', true, 'u', 'search_path=pgflow, cron, pg_temp');

CREATE TEMP VIEW actual_functions AS
    SELECT p.proname::text AS name,
           p.proname || '(' || pg_get_function_arguments(p.oid) || ') -> ' || pg_get_function_result(p.oid) AS signature,
           p.provolatile::text AS vol, p.prosecdef AS secdef, p.proparallel::text AS parallel,
           coalesce(array_to_string(p.proconfig, ';'), '') AS config, p.proisstrict AS strict, p.prokind::text AS kind
    FROM pg_proc p WHERE p.pronamespace = 'pgflow'::regnamespace;

SELECT is((SELECT count(*)::int FROM expected_functions), 31, 'the contract lists 31 functions');
SELECT set_has('SELECT signature FROM actual_functions', 'SELECT signature FROM expected_functions',
               'every function of 2.0 exists with its exact argument names, types, defaults and result');
SELECT is_empty($$SELECT name FROM actual_functions
                  WHERE name NOT IN (SELECT name FROM expected_functions)
                    AND name NOT LIKE '\_%' AND name <> 'prune_data_older_than'
                    AND name NOT IN ('set_sql_handler', 'set_program_handler', 'remove_handler', 'run_local_tasks', 'push_sql',
                                     'push_sql_batch', 'create_pool', 'drop_pool', 'set_pool',
                                     'cancel_run', 'run_status', 'pause_run', 'resume_run', 'start_run',
                                     'set_flow_priority', 'set_flow_concurrency', 'retry_run', 'run_history',
                                     'schedule_flow', 'list_schedules', 'pause_schedule', 'resume_schedule',
                                     'unschedule', 'check_invariants', 'create_roles', 'grant_flow', 'revoke_flow',
                                     'explain_run', 'flow_graph', 'run_graph', 'release_task', 'run_input')$$,
                'beyond the contract''s 31, schema pgflow holds only internal helpers (_name), prune_data_older_than (2.8) and the documented functions of steps run by the database and of run control');
SELECT is((SELECT count(*)::int FROM actual_functions GROUP BY name ORDER BY 1 DESC LIMIT 1), 1,
          'no function name is overloaded');
SELECT is_empty('SELECT name FROM actual_functions WHERE (strict OR kind <> ''f'') AND name IN (SELECT name FROM expected_functions)',
                'no pgflow function is STRICT, all are plain functions');
SELECT set_eq($$SELECT name, vol FROM actual_functions WHERE name IN (SELECT name FROM expected_functions)$$,
              'SELECT name, vol FROM expected_functions', 'volatility of every function as in 2.0');
SELECT set_eq($$SELECT name FROM actual_functions WHERE secdef AND name NOT IN ('_insert_map_tasks', 'check_invariants')$$,
              'SELECT name FROM expected_functions WHERE secdef',
              'exactly the six SECURITY DEFINER functions of 2.0 (and the internal _insert_map_tasks)');
SELECT set_eq($$SELECT name FROM actual_functions WHERE parallel = 's'$$,
              $$VALUES ('is_local'), ('calculate_retry_delay')$$, 'only is_local and calculate_retry_delay are PARALLEL SAFE');
SELECT set_eq($$SELECT name, config FROM actual_functions WHERE name IN (SELECT name FROM expected_functions)$$,
              'SELECT name, config FROM expected_functions',
              'SET search_path of every function as in 2.0 (sp='''', none, or pgflow, cron, pg_temp)');
-- prune_data_older_than is not shipped with another signature: a user's CREATE OR REPLACE must work.
SELECT lives_ok($q$CREATE OR REPLACE FUNCTION pgflow.prune_data_older_than(retention_interval interval)
                  RETURNS void LANGUAGE plpgsql AS $b$ BEGIN END $b$$q$,
                'CREATE OR REPLACE pgflow.prune_data_older_than(interval) RETURNS void succeeds (2.8)');

---------------------------------------------------------------------------------------------------
-- Constraint behaviour on direct writes (clients write the tables directly)
---------------------------------------------------------------------------------------------------
SELECT pgflow.create_flow('sch');
SELECT pgflow.add_step('sch', 'a');
SELECT pgflow.add_step('sch', 'b', ARRAY['a']);
SELECT pgflow.start_flow('sch', '{}', '00000000-0000-0000-0000-000000000001');

SELECT throws_ok($$INSERT INTO pgflow.flows (flow_slug) VALUES ('sch')$$, '23505',
                 'duplicate key value violates unique constraint "flows_pkey"', 'flows_pkey');
SELECT throws_ok($$INSERT INTO pgflow.steps (flow_slug, step_slug, step_index) VALUES ('sch', 'c', 1)$$, '23505',
                 'duplicate key value violates unique constraint "steps_flow_slug_step_index_key"',
                 'direct insert reusing a step_index: steps_flow_slug_step_index_key');
SELECT throws_ok($$INSERT INTO pgflow.steps (flow_slug, step_slug, step_index, deps_count) VALUES ('sch', 'c', 5, -1)$$, '23514',
                 'new row for relation "steps" violates check constraint "steps_deps_count_check"', 'steps_deps_count_check');
SELECT throws_ok($$UPDATE pgflow.step_states SET status = 'bogus' WHERE step_slug = 'a'$$, '23514',
                 'new row for relation "step_states" violates check constraint "status_is_valid"', 'step_states status_is_valid');
SELECT throws_ok($$UPDATE pgflow.step_states SET completed_at = now(), skipped_at = now() WHERE step_slug = 'b'$$, '23514',
                 'new row for relation "step_states" violates check constraint "completed_at_or_failed_at_or_skipped_at"',
                 'completed_at and skipped_at together violate completed_at_or_failed_at_or_skipped_at');
SELECT throws_ok($$UPDATE pgflow.step_states SET failed_at = now(), skipped_at = now() WHERE step_slug = 'b'$$, '23514',
                 'new row for relation "step_states" violates check constraint "completed_at_or_failed_at_or_skipped_at"',
                 'failed_at and skipped_at together violate completed_at_or_failed_at_or_skipped_at');
SELECT lives_ok($$UPDATE pgflow.step_states SET failed_at = now() WHERE step_slug = 'b'$$,
                'one terminal timestamp with started_at NULL passes (NULL comparisons pass a CHECK)');
SELECT throws_ok($$UPDATE pgflow.step_states SET status = 'skipped' WHERE step_slug = 'b'$$, '23514',
                 'new row for relation "step_states" violates check constraint "skip_reason_matches_status"',
                 'skipped without skip_reason');
SELECT throws_ok($$UPDATE pgflow.step_states SET remaining_deps = -1 WHERE step_slug = 'b'$$, '23514',
                 'new row for relation "step_states" violates check constraint "step_states_remaining_deps_check"',
                 'remaining_deps never negative');
SELECT throws_ok($$UPDATE pgflow.step_tasks SET status = 'done'$$, '23514',
                 'new row for relation "step_tasks" violates check constraint "valid_status"', 'step_tasks valid_status');
SELECT throws_ok($$UPDATE pgflow.step_tasks SET output = '1'$$, '23514',
                 'new row for relation "step_tasks" violates check constraint "output_valid_only_for_completed"',
                 'task output only when completed or failed');
SELECT throws_ok($$UPDATE pgflow.step_tasks SET last_worker_id = '00000000-0000-0000-0000-00000000dead'$$, '23503',
                 'insert or update on table "step_tasks" violates foreign key constraint "step_tasks_last_worker_id_fkey"',
                 'last_worker_id must name a worker');
SELECT throws_ok($$UPDATE pgflow.runs SET remaining_steps = -1$$, '23514',
                 'new row for relation "runs" violates check constraint "runs_remaining_steps_check"', 'runs_remaining_steps_check');
SELECT throws_ok($$UPDATE pgflow.runs SET completed_at = now(), failed_at = now()$$, '23514',
                 'new row for relation "runs" violates check constraint "completed_at_or_failed_at"', 'runs completed_at_or_failed_at');
SELECT throws_ok($$INSERT INTO pgflow.worker_functions (function_name, debounce) VALUES ('f', '500 milliseconds')$$, '23514',
                 'new row for relation "worker_functions" violates check constraint "worker_functions_debounce_check"',
                 'debounce of at least one second');

-- ON DELETE SET NULL: deleting a worker keeps its tasks and clears last_worker_id.
SELECT pg_temp.start_step('00000000-0000-0000-0000-000000000001', 'a');
DELETE FROM pgflow.workers WHERE worker_id = pg_temp.worker();
SELECT results_eq($$SELECT status, last_worker_id FROM pgflow.step_tasks WHERE step_slug = 'a'$$,
                  $$VALUES ('started'::text, NULL::uuid)$$, 'deleting a worker sets step_tasks.last_worker_id to NULL');

SELECT * FROM finish();
ROLLBACK;
