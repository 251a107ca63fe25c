-- Realtime events: every event with its name, topic, private flag, exact
-- payload keys/values and the emission order inside each call, through a stub realtime.send that
-- records its calls. Ends by dropping realtime.send (events then go nowhere, nothing fails).
BEGIN;
SELECT plan(26);
\ir helpers/common.psql

-- The stub exists before any pgflow call of this transaction. PL/pgSQL like Supabase's own
-- realtime.send (a LANGUAGE sql stub is exercised in 09a_events_late_realtime.sql).
CREATE SCHEMA realtime;
CREATE TABLE realtime.sent (id bigserial PRIMARY KEY, payload jsonb, event text, topic text, private boolean);
CREATE FUNCTION realtime.send(payload jsonb, event text, topic text, private boolean) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO realtime.sent (payload, event, topic, private) VALUES (payload, event, topic, private);
END
$$;

CREATE TEMP TABLE marks (name text PRIMARY KEY, id bigint);
CREATE FUNCTION pg_temp.mark(n text) RETURNS void LANGUAGE sql AS $$
    INSERT INTO marks SELECT n, coalesce(max(id), 0) FROM realtime.sent ON CONFLICT (name) DO UPDATE SET id = excluded.id
$$;
-- Payload with every timestamp equal to now() (rendered exactly like jsonb renders now()) replaced by "NOW".
CREATE FUNCTION pg_temp.norm(p jsonb) RETURNS jsonb LANGUAGE sql AS $$
    SELECT coalesce(jsonb_object_agg(k, CASE WHEN k IN ('started_at', 'completed_at', 'failed_at', 'skipped_at')
                                                  AND v = to_jsonb(now()) THEN '"NOW"'::jsonb ELSE v END), '{}')
    FROM jsonb_each(p) AS e(k, v)
$$;
-- Events recorded since a mark, in call order.
CREATE FUNCTION pg_temp.evs(n text) RETURNS TABLE(event text, topic text, private boolean, payload jsonb) LANGUAGE sql AS $$
    SELECT s.event, s.topic, s.private, pg_temp.norm(s.payload) FROM realtime.sent s
    WHERE s.id > (SELECT id FROM marks WHERE name = n) ORDER BY s.id
$$;
CREATE FUNCTION pg_temp.names(n text) RETURNS text[] LANGUAGE sql AS $$
    SELECT coalesce(array_agg(event), '{}') FROM pg_temp.evs(n)
$$;

---------------------------------------------------------------------------------------------------
-- Happy path: run:started, step:started, step:completed, run:completed
---------------------------------------------------------------------------------------------------
SELECT pgflow.create_flow('ev');
SELECT pgflow.add_step('ev', 'b');
SELECT pgflow.add_step('ev', 'a');
SELECT pgflow.add_step('ev', 'm', ARRAY['a'], step_type => 'map');
SELECT pgflow.add_step('ev', 'z', ARRAY['m', 'b']);
SELECT pg_temp.mark('start');
SELECT pgflow.start_flow('ev', '{"k": 1}', '00000000-0000-0000-0000-000000000901');
SELECT results_eq($$SELECT event, topic, private, payload FROM pg_temp.evs('start')$$,
    $$VALUES ('run:started'::text, 'pgflow:run:00000000-0000-0000-0000-000000000901'::text, false,
              '{"event_type": "run:started", "run_id": "00000000-0000-0000-0000-000000000901", "flow_slug": "ev",
                "input": {"k": 1}, "status": "started", "remaining_steps": 4, "started_at": "NOW"}'::jsonb),
             ('step:a:started', 'pgflow:run:00000000-0000-0000-0000-000000000901', false,
              '{"event_type": "step:started", "run_id": "00000000-0000-0000-0000-000000000901", "step_slug": "a",
                "status": "started", "started_at": "NOW", "remaining_tasks": 1, "remaining_deps": 0}'),
             ('step:b:started', 'pgflow:run:00000000-0000-0000-0000-000000000901', false,
              '{"event_type": "step:started", "run_id": "00000000-0000-0000-0000-000000000901", "step_slug": "b",
                "status": "started", "started_at": "NOW", "remaining_tasks": 1, "remaining_deps": 0}')$$,
    'start_flow: run:started then step:<slug>:started in step_slug order; topic pgflow:run:<id>, private false, exact payloads');

SELECT pg_temp.start_step('00000000-0000-0000-0000-000000000901', 'a');
SELECT pg_temp.mark('ca');
SELECT pgflow.complete_task('00000000-0000-0000-0000-000000000901', 'a', 0, '["x", "y"]');
SELECT results_eq($$SELECT event, payload FROM pg_temp.evs('ca')$$,
    $$VALUES ('step:a:completed'::text,
              '{"event_type": "step:completed", "run_id": "00000000-0000-0000-0000-000000000901", "step_slug": "a",
                "status": "completed", "output": ["x", "y"], "completed_at": "NOW"}'::jsonb),
             ('step:m:started',
              '{"event_type": "step:started", "run_id": "00000000-0000-0000-0000-000000000901", "step_slug": "m",
                "status": "started", "started_at": "NOW", "remaining_tasks": 2, "remaining_deps": 0}')$$,
    'complete_task: step:completed (output = stored output) then step:started of the newly ready map (remaining_tasks 2)');

SELECT pg_temp.start_step('00000000-0000-0000-0000-000000000901', 'm');
SELECT pg_temp.mark('m0');
SELECT pgflow.complete_task('00000000-0000-0000-0000-000000000901', 'm', 1, '"Y"');
SELECT is(pg_temp.names('m0'), '{}'::text[], 'a map task that does not finish its step emits nothing');
SELECT pgflow.complete_task('00000000-0000-0000-0000-000000000901', 'm', 0, '"X"');
SELECT results_eq($$SELECT event, payload FROM pg_temp.evs('m0')$$,
    $$VALUES ('step:m:completed'::text,
              '{"event_type": "step:completed", "run_id": "00000000-0000-0000-0000-000000000901", "step_slug": "m",
                "status": "completed", "output": ["X", "Y"], "completed_at": "NOW"}'::jsonb)$$,
    'the last map task: step:completed with the aggregated, ordered output');

SELECT pg_temp.start_step('00000000-0000-0000-0000-000000000901', 'b');
SELECT pg_temp.mark('cb');
SELECT pgflow.complete_task('00000000-0000-0000-0000-000000000901', 'b', 0, NULL);
SELECT results_eq($$SELECT event, payload FROM pg_temp.evs('cb')$$,
    $$VALUES ('step:b:completed'::text,
              '{"event_type": "step:completed", "run_id": "00000000-0000-0000-0000-000000000901", "step_slug": "b",
                "status": "completed", "output": null, "completed_at": "NOW"}'::jsonb),
             ('step:z:started',
              '{"event_type": "step:started", "run_id": "00000000-0000-0000-0000-000000000901", "step_slug": "z",
                "status": "started", "started_at": "NOW", "remaining_tasks": 1, "remaining_deps": 0}')$$,
    'step:completed with a NULL output carries "output": null');

SELECT pg_temp.start_step('00000000-0000-0000-0000-000000000901', 'z');
SELECT pg_temp.mark('cz');
SELECT pgflow.complete_task('00000000-0000-0000-0000-000000000901', 'z', 0, '{"done": true}');
SELECT results_eq($$SELECT event, payload FROM pg_temp.evs('cz')$$,
    $$VALUES ('step:z:completed'::text,
              '{"event_type": "step:completed", "run_id": "00000000-0000-0000-0000-000000000901", "step_slug": "z",
                "status": "completed", "output": {"done": true}, "completed_at": "NOW"}'::jsonb),
             ('run:completed',
              '{"event_type": "run:completed", "run_id": "00000000-0000-0000-0000-000000000901", "flow_slug": "ev",
                "status": "completed", "output": {"z": {"done": true}}, "completed_at": "NOW"}')$$,
    'last step: step:completed then run:completed (flow_slug, status, output, completed_at)');

-- Late and idempotent calls emit nothing.
SELECT pg_temp.mark('late');
SELECT pgflow.complete_task('00000000-0000-0000-0000-000000000901', 'z', 0, '{"again": true}');
SELECT pgflow.fail_task('00000000-0000-0000-0000-000000000901', 'a', 0, 'late');
SELECT pgflow.maybe_complete_run('00000000-0000-0000-0000-000000000901');
SELECT pgflow.start_ready_steps('00000000-0000-0000-0000-000000000901');
SELECT is(pg_temp.names('late'), '{}'::text[], 'late callbacks, maybe_complete_run on a completed run: no events');
SELECT ok(NOT EXISTS (SELECT 1 FROM realtime.sent WHERE payload ? 'id'), 'pgflow never sends an "id" key');

---------------------------------------------------------------------------------------------------
-- Failures
---------------------------------------------------------------------------------------------------
SELECT pgflow.create_flow('evf', 2);
SELECT pgflow.add_step('evf', 'a');
SELECT pgflow.add_step('evf', 'other');
SELECT pgflow.start_flow('evf', '{}', '00000000-0000-0000-0000-000000000902');
SELECT pg_temp.start_step('00000000-0000-0000-0000-000000000902', 'a');
SELECT pg_temp.start_step('00000000-0000-0000-0000-000000000902', 'other');
SELECT pg_temp.mark('retry');
SELECT pgflow.fail_task('00000000-0000-0000-0000-000000000902', 'a', 0, 'first');
SELECT is(pg_temp.names('retry'), '{}'::text[], 'a retry emits nothing');
SELECT pg_temp.start_step('00000000-0000-0000-0000-000000000902', 'a');
SELECT pg_temp.mark('fail');
SELECT pgflow.fail_task('00000000-0000-0000-0000-000000000902', 'a', 0, 'final');
SELECT results_eq($$SELECT event, payload FROM pg_temp.evs('fail')$$,
    $$VALUES ('step:a:failed'::text,
              '{"event_type": "step:failed", "run_id": "00000000-0000-0000-0000-000000000902", "step_slug": "a",
                "status": "failed", "error_message": "final", "failed_at": "NOW"}'::jsonb),
             ('run:failed',
              '{"event_type": "run:failed", "run_id": "00000000-0000-0000-0000-000000000902", "flow_slug": "evf",
                "status": "failed", "error_message": "final", "failed_at": "NOW"}')$$,
    'exhausted failure: step:failed then run:failed, both with the error message');
SELECT pg_temp.mark('failedrun');
SELECT pgflow.fail_task('00000000-0000-0000-0000-000000000902', 'other', 0, 'after');
SELECT pgflow.complete_task('00000000-0000-0000-0000-000000000902', 'other', 0, '1');
SELECT is(pg_temp.names('failedrun'), '{}'::text[], 'fail_task / complete_task on a failed run: no events');

-- Type violation: run:failed (no error_message) then step:failed
SELECT pgflow.create_flow('evt');
SELECT pgflow.add_step('evt', 'src');
SELECT pgflow.add_step('evt', 'fan', ARRAY['src'], step_type => 'map');
SELECT pgflow.start_flow('evt', '{}', '00000000-0000-0000-0000-000000000903');
SELECT pg_temp.start_step('00000000-0000-0000-0000-000000000903', 'src');
SELECT pg_temp.mark('tv');
SELECT pgflow.complete_task('00000000-0000-0000-0000-000000000903', 'src', 0, '{"a": 1}');
SELECT results_eq($$SELECT event, payload FROM pg_temp.evs('tv')$$,
    $$VALUES ('run:failed'::text,
              '{"event_type": "run:failed", "run_id": "00000000-0000-0000-0000-000000000903", "flow_slug": "evt",
                "status": "failed", "failed_at": "NOW"}'::jsonb),
             ('step:src:failed',
              '{"event_type": "step:failed", "run_id": "00000000-0000-0000-0000-000000000903", "step_slug": "src",
                "status": "failed", "failed_at": "NOW",
                "error_message": "[TYPE_VIOLATION] Map step fan expects array input but dependency src produced object"}')$$,
    'type violation: run:failed without error_message, then step:failed with the type-violation message');

---------------------------------------------------------------------------------------------------
-- Conditions
---------------------------------------------------------------------------------------------------
SELECT pgflow.create_flow('evc');
SELECT pgflow.add_step('evc', 'gate', required_input_pattern => '{"ok": true}', when_unmet => 'fail');
SELECT pgflow.add_step('evc', 'plain');
SELECT pg_temp.mark('cfail');
SELECT pgflow.start_flow('evc', '{}', '00000000-0000-0000-0000-000000000904');
SELECT results_eq($$SELECT event, payload FROM pg_temp.evs('cfail')$$,
    $$VALUES ('run:started'::text,
              '{"event_type": "run:started", "run_id": "00000000-0000-0000-0000-000000000904", "flow_slug": "evc",
                "input": {}, "status": "started", "remaining_steps": 2, "started_at": "NOW"}'::jsonb),
             ('step:gate:failed',
              '{"event_type": "step:failed", "run_id": "00000000-0000-0000-0000-000000000904", "step_slug": "gate",
                "status": "failed", "error_message": "Condition not met", "failed_at": "NOW"}'),
             ('run:failed',
              '{"event_type": "run:failed", "run_id": "00000000-0000-0000-0000-000000000904", "flow_slug": "evc",
                "status": "failed", "error_message": "Condition not met", "failed_at": "NOW"}')$$,
    'condition fail: run:started, step:failed, run:failed (Condition not met); no step:started afterwards');

-- Condition skip, skip-cascade, taskless cascade and step:started in one start_flow.
SELECT pgflow.create_flow('evmix');
SELECT pgflow.add_step('evmix', 'plain');
SELECT pgflow.add_step('evmix', 'em', step_type => 'map');
SELECT pgflow.add_step('evmix', 'em2', ARRAY['em'], step_type => 'map');
SELECT pgflow.add_step('evmix', 'fin', ARRAY['em2']);
SELECT pgflow.add_step('evmix', 'c_skip', required_input_pattern => '{"x": 1}');
SELECT pgflow.add_step('evmix', 'c_casc', required_input_pattern => '{"x": 1}', when_unmet => 'skip-cascade');
SELECT pgflow.add_step('evmix', 'casc_child', ARRAY['c_casc']);
SELECT pg_temp.mark('mix');
SELECT pgflow.start_flow('evmix', '[]', '00000000-0000-0000-0000-000000000905');
SELECT results_eq($$SELECT event, payload FROM pg_temp.evs('mix')$$,
    $$VALUES ('run:started'::text,
              '{"event_type": "run:started", "run_id": "00000000-0000-0000-0000-000000000905", "flow_slug": "evmix",
                "input": [], "status": "started", "remaining_steps": 7, "started_at": "NOW"}'::jsonb),
             ('step:c_skip:skipped',
              '{"event_type": "step:skipped", "run_id": "00000000-0000-0000-0000-000000000905", "flow_slug": "evmix",
                "step_slug": "c_skip", "status": "skipped", "skip_reason": "condition_unmet", "skipped_at": "NOW"}'),
             ('step:c_casc:skipped',
              '{"event_type": "step:skipped", "run_id": "00000000-0000-0000-0000-000000000905", "flow_slug": "evmix",
                "step_slug": "c_casc", "status": "skipped", "skip_reason": "condition_unmet", "skipped_at": "NOW"}'),
             ('step:casc_child:skipped',
              '{"event_type": "step:skipped", "run_id": "00000000-0000-0000-0000-000000000905", "flow_slug": "evmix",
                "step_slug": "casc_child", "status": "skipped", "skip_reason": "dependency_skipped", "skipped_at": "NOW"}'),
             ('step:em:completed',
              '{"event_type": "step:completed", "run_id": "00000000-0000-0000-0000-000000000905", "step_slug": "em",
                "status": "completed", "started_at": "NOW", "completed_at": "NOW", "remaining_tasks": 0, "remaining_deps": 0,
                "output": []}'),
             ('step:em2:completed',
              '{"event_type": "step:completed", "run_id": "00000000-0000-0000-0000-000000000905", "step_slug": "em2",
                "status": "completed", "started_at": "NOW", "completed_at": "NOW", "remaining_tasks": 0, "remaining_deps": 0,
                "output": []}'),
             ('step:fin:started',
              '{"event_type": "step:started", "run_id": "00000000-0000-0000-0000-000000000905", "step_slug": "fin",
                "status": "started", "started_at": "NOW", "remaining_tasks": 1, "remaining_deps": 0}'),
             ('step:plain:started',
              '{"event_type": "step:started", "run_id": "00000000-0000-0000-0000-000000000905", "step_slug": "plain",
                "status": "started", "started_at": "NOW", "remaining_tasks": 1, "remaining_deps": 0}')$$,
    'start_flow order: run:started, condition skip, skip-cascade (parent then child), taskless completions wave by wave, step:started');

-- Only taskless steps: run:completed at the end of start_flow.
SELECT pgflow.create_flow('evt2');
SELECT pgflow.add_step('evt2', 'm1', step_type => 'map');
SELECT pgflow.add_step('evt2', 'aa', step_type => 'map');
SELECT pg_temp.mark('tl');
SELECT pgflow.start_flow('evt2', '[]', '00000000-0000-0000-0000-000000000906');
SELECT is(pg_temp.names('tl'), ARRAY['run:started', 'step:m1:completed', 'step:aa:completed', 'run:completed'],
          'taskless-only flow: run:started, step:completed per step in step_index order (one wave), run:completed');
SELECT results_eq($$SELECT payload FROM pg_temp.evs('tl') WHERE event = 'run:completed'$$,
    $$VALUES ('{"event_type": "run:completed", "run_id": "00000000-0000-0000-0000-000000000906", "flow_slug": "evt2",
                "status": "completed", "output": {"aa": [], "m1": []}, "completed_at": "NOW"}'::jsonb)$$,
    'run:completed payload');

-- Condition events inside complete_task come after its step:completed.
SELECT pgflow.create_flow('evcc');
SELECT pgflow.add_step('evcc', 'a');
SELECT pgflow.add_step('evcc', 'skipme', ARRAY['a'], required_input_pattern => '{"a": "yes"}');
SELECT pgflow.add_step('evcc', 'next', ARRAY['skipme']);
SELECT pgflow.start_flow('evcc', '{}', '00000000-0000-0000-0000-000000000907');
SELECT pg_temp.start_step('00000000-0000-0000-0000-000000000907', 'a');
SELECT pg_temp.mark('cc');
SELECT pgflow.complete_task('00000000-0000-0000-0000-000000000907', 'a', 0, '"no"');
SELECT is(pg_temp.names('cc'), ARRAY['step:a:completed', 'step:skipme:skipped', 'step:next:started'],
          'complete_task: step:completed, then condition events, then step:started');

---------------------------------------------------------------------------------------------------
-- when_exhausted skip / skip-cascade
---------------------------------------------------------------------------------------------------
SELECT pgflow.create_flow('evs', 1);
SELECT pgflow.add_step('evs', 'a', when_exhausted => 'skip');
SELECT pgflow.add_step('evs', 'm', ARRAY['a'], step_type => 'map');
SELECT pgflow.add_step('evs', 'b', ARRAY['m']);
SELECT pgflow.add_step('evs', 'c', ARRAY['a'], when_exhausted => 'skip-cascade');
SELECT pgflow.add_step('evs', 'd', ARRAY['c']);
SELECT pgflow.start_flow('evs', '{}', '00000000-0000-0000-0000-000000000908');
SELECT pg_temp.start_step('00000000-0000-0000-0000-000000000908', 'a');
SELECT pg_temp.mark('skip');
SELECT pgflow.fail_task('00000000-0000-0000-0000-000000000908', 'a', 0, 'handler broke');
SELECT results_eq($$SELECT event, payload FROM pg_temp.evs('skip')$$,
    $$VALUES ('step:a:skipped'::text,
              '{"event_type": "step:skipped", "run_id": "00000000-0000-0000-0000-000000000908", "step_slug": "a",
                "status": "skipped", "skip_reason": "handler_failed", "error_message": "handler broke", "skipped_at": "NOW"}'::jsonb),
             ('step:m:completed',
              '{"event_type": "step:completed", "run_id": "00000000-0000-0000-0000-000000000908", "step_slug": "m",
                "status": "completed", "started_at": "NOW", "completed_at": "NOW", "remaining_tasks": 0, "remaining_deps": 0,
                "output": []}'),
             ('step:b:started',
              '{"event_type": "step:started", "run_id": "00000000-0000-0000-0000-000000000908", "step_slug": "b",
                "status": "started", "started_at": "NOW", "remaining_tasks": 1, "remaining_deps": 0}'),
             ('step:c:started',
              '{"event_type": "step:started", "run_id": "00000000-0000-0000-0000-000000000908", "step_slug": "c",
                "status": "started", "started_at": "NOW", "remaining_tasks": 1, "remaining_deps": 0}')$$,
    'fail_task skip: step:skipped (handler_failed, error_message, no flow_slug), taskless completion, then step:started');
SELECT pg_temp.start_step('00000000-0000-0000-0000-000000000908', 'c');
SELECT pg_temp.mark('casc');
SELECT pgflow.fail_task('00000000-0000-0000-0000-000000000908', 'c', 0, 'c broke');
SELECT results_eq($$SELECT event, payload FROM pg_temp.evs('casc')$$,
    $$VALUES ('step:c:skipped'::text,
              '{"event_type": "step:skipped", "run_id": "00000000-0000-0000-0000-000000000908", "step_slug": "c",
                "status": "skipped", "skip_reason": "handler_failed", "error_message": "c broke", "skipped_at": "NOW"}'::jsonb),
             ('step:d:skipped',
              '{"event_type": "step:skipped", "run_id": "00000000-0000-0000-0000-000000000908", "flow_slug": "evs",
                "step_slug": "d", "status": "skipped", "skip_reason": "dependency_skipped", "skipped_at": "NOW"}')$$,
    'fail_task skip-cascade: step:skipped of the step, then step:skipped (with flow_slug) of its dependent');
SELECT pg_temp.start_step('00000000-0000-0000-0000-000000000908', 'b');
SELECT pg_temp.mark('end');
SELECT pgflow.complete_task('00000000-0000-0000-0000-000000000908', 'b', 0, '"B"');
SELECT is(pg_temp.names('end'), ARRAY['step:b:completed', 'run:completed'], 'then step:completed, run:completed');

-- Direct calls
SELECT pgflow.create_flow('evd');
SELECT pgflow.add_step('evd', 'p');
SELECT pgflow.add_step('evd', 'q', ARRAY['p']);
SELECT pgflow.add_step('evd', 'r', ARRAY['q']);
SELECT pgflow.start_flow('evd', '{}', '00000000-0000-0000-0000-000000000909');
SELECT pg_temp.mark('force');
SELECT pgflow._cascade_force_skip_steps('00000000-0000-0000-0000-000000000909', 'p', 'manual');
SELECT results_eq($$SELECT event, payload ->> 'skip_reason', payload ->> 'flow_slug' FROM pg_temp.evs('force')$$,
    $$VALUES ('step:p:skipped'::text, 'manual'::text, 'evd'::text), ('step:q:skipped', 'dependency_skipped', 'evd'),
             ('step:r:skipped', 'dependency_skipped', 'evd')$$,
    '_cascade_force_skip_steps: one step:skipped per skipped step, parents first, with flow_slug');
SELECT pg_temp.mark('force2');
SELECT pgflow._cascade_force_skip_steps('00000000-0000-0000-0000-000000000909', 'p', 'manual');
SELECT is(pg_temp.names('force2'), '{}'::text[], 'second force skip: no events');

---------------------------------------------------------------------------------------------------
-- realtime.send disappears: looked up at call time, so events go nowhere and nothing fails.
---------------------------------------------------------------------------------------------------
SELECT pgflow.start_flow('ev', '{}', '00000000-0000-0000-0000-000000000910');
DROP FUNCTION realtime.send(jsonb, text, text, boolean);
SELECT lives_ok($$SELECT pgflow.start_flow('ev', '{}', '00000000-0000-0000-0000-000000000911')$$,
                'start_flow after realtime.send was dropped in the same transaction');
SELECT lives_ok($$SELECT pg_temp.complete_step('00000000-0000-0000-0000-000000000910', 'a', '["q"]')$$,
                'complete_task after realtime.send was dropped');
SELECT results_eq($$SELECT status FROM pgflow.step_states WHERE run_id = '00000000-0000-0000-0000-000000000910' AND step_slug = 'm'$$,
                  $$VALUES ('started'::text)$$, 'and the run goes on');
SELECT is((SELECT count(*)::int FROM realtime.sent WHERE topic IN ('pgflow:run:00000000-0000-0000-0000-000000000911')), 0,
          'nothing recorded for the run started after the drop');

SELECT * FROM finish();
ROLLBACK;
