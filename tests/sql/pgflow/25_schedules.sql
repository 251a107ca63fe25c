-- Schedules: bad input; next ticks of cron expressions (with seconds, time zones, both
-- daylight-saving changes) and intervals; firing (the worker's _fire_schedules, called here):
-- one run per tick, a tick never twice, catch-up and skip after downtime; list, pause, resume,
-- unschedule; the flow's deletion.
BEGIN;
SELECT plan(43);
\ir helpers/common.psql

SELECT pgflow.create_flow('sch');
SELECT pgflow.add_step('sch', 'only');
CREATE TEMP TABLE ids (name text PRIMARY KEY, id bigint);
CREATE FUNCTION pg_temp.id(p_name text) RETURNS bigint LANGUAGE sql AS $$ SELECT id FROM ids WHERE name = p_name $$;
CREATE FUNCTION pg_temp.tick(p_schedule text, p_zone text, p_after timestamptz) RETURNS text LANGUAGE sql AS $$
    SELECT to_char(pgflow._next_tick(p_schedule, p_zone, '2026-01-01 00:00:00+00', p_after) AT TIME ZONE 'UTC',
                   'YYYY-MM-DD HH24:MI:SS')
$$;

---------------------------------------------------------------------------------------------------
-- Bad input
---------------------------------------------------------------------------------------------------
SELECT throws_ok($$SELECT pgflow.schedule_flow(NULL, '* * * * *')$$, '22004', 'flow_slug must not be NULL',
                 'schedule_flow without a flow is 22004');
SELECT throws_ok($$SELECT pgflow.schedule_flow('sch', NULL)$$, '22004', 'schedule must not be NULL',
                 'without a schedule is 22004');
SELECT throws_ok($$SELECT pgflow.schedule_flow('sch', '* * * * *', NULL)$$, '22004', 'input must not be NULL',
                 'a NULL input is 22004');
SELECT throws_ok($$SELECT pgflow.schedule_flow('nope', '* * * * *')$$, '42704', 'flow "nope" does not exist',
                 'an unknown flow is 42704');
SELECT throws_ok($$SELECT pgflow.schedule_flow('sch', '61 * * * *')$$, '22023', NULL, 'a bad cron expression is 22023');
SELECT throws_matching($$SELECT pgflow.schedule_flow('sch', '1 * * *')$$, 'not a cron expression \(a cron expression has 5 or 6 fields, not 4\)',
                       'and says why');
SELECT throws_ok($$SELECT pgflow.schedule_flow('sch', '1 month')$$, '22023', NULL, 'an interval with months is 22023');
SELECT throws_ok($$SELECT pgflow.schedule_flow('sch', '0.5 seconds')$$, '22023', NULL, 'an interval under a second is 22023');
SELECT throws_ok($$SELECT pgflow.schedule_flow('sch', '* * * * *', time_zone => 'Mars/Olympus')$$, '22023',
                 'time zone "Mars/Olympus" is not known', 'an unknown time zone is 22023');
SELECT throws_ok($$SELECT pgflow.pause_schedule(NULL)$$, '22004', 'schedule_id must not be NULL', 'pause_schedule(NULL) is 22004');
SELECT throws_ok($$SELECT pgflow.resume_schedule(-1)$$, 'P0002', 'schedule -1 does not exist', 'an unknown schedule is P0002');
SELECT throws_ok($$SELECT pgflow.unschedule(-1)$$, 'P0002', 'schedule -1 does not exist', 'unschedule of an unknown one too');
CREATE ROLE pgflow_t_erin NOSUPERUSER;
GRANT USAGE ON SCHEMA pgflow TO pgflow_t_erin;
SET LOCAL ROLE pgflow_t_erin;
SELECT throws_ok($$SELECT pgflow.schedule_flow('sch', '* * * * *')$$, '42501',
                 'must be the owner of flow "sch" to schedule it', 'only the flow''s owner may schedule it');
RESET ROLE;

---------------------------------------------------------------------------------------------------
-- Next ticks
---------------------------------------------------------------------------------------------------
SELECT is(pg_temp.tick('*/15 * * * *', 'UTC', '2026-12-06 10:07:30+00'), '2026-12-06 10:15:00', 'every 15 minutes');
SELECT is(pg_temp.tick('*/10 * * * * *', 'UTC', '2026-12-06 10:07:30+00'), '2026-12-06 10:07:40',
          'six fields: seconds first');
SELECT is(pg_temp.tick('0 9 * * *', 'Europe/Paris', '2026-12-06 10:00:00+00'), '2026-12-07 08:00:00',
          '09:00 in Paris is 08:00 UTC in winter');
SELECT is(pg_temp.tick('0 9 * * *', 'Europe/Paris', '2026-07-01 10:00:00+00'), '2026-07-02 07:00:00',
          'and 07:00 UTC in summer');
SELECT is(pg_temp.tick('30 2 * * *', 'America/New_York', '2026-03-08 05:00:00+00'), '2026-03-08 07:00:00',
          'a wall time the clock jumps over (02:30 on 8 March in New York) fires at the change, 03:00 EDT');
SELECT is(pg_temp.tick('30 2 * * *', 'America/New_York', '2026-03-08 07:00:00+00'), '2026-03-09 06:30:00',
          'and the next day as usual');
SELECT is(pg_temp.tick('30 1 * * *', 'America/New_York', '2026-11-01 04:00:00+00'), '2026-11-01 05:30:00',
          'a wall time that occurs twice (01:30 on 1 November) fires at its first occurrence, EDT');
SELECT is(pg_temp.tick('30 1 * * *', 'America/New_York', '2026-11-01 05:30:00+00'), '2026-11-02 06:30:00',
          'and not again at the second');
SELECT is(pg_temp.tick('30 seconds', 'UTC', '2026-01-01 00:01:10+00'), '2026-01-01 00:01:30',
          'an interval counts from the schedule''s creation');

---------------------------------------------------------------------------------------------------
-- Firing: one run per tick
---------------------------------------------------------------------------------------------------
INSERT INTO ids SELECT 'minutely', pgflow.schedule_flow('sch', '* * * * *', '{"n": 1}');
SELECT is((SELECT next_fire_at FROM pgflow.list_schedules() WHERE schedule_id = pg_temp.id('minutely')),
          date_trunc('minute', now()) + interval '1 minute', 'a new schedule''s next tick is the next minute');
SELECT is((SELECT pgflow._fire_schedules()), 0, 'nothing is due yet');
UPDATE pgflow._schedules SET next_fire_at = date_trunc('minute', now()) WHERE schedule_id = pg_temp.id('minutely');
SELECT is((SELECT pgflow._fire_schedules()), 1, 'a due tick fires');
SELECT is((SELECT count(*)::int || ' ' || min(input::text) FROM pgflow.runs WHERE flow_slug = 'sch'), '1 {"n": 1}',
          'one run, with the schedule''s input');
SELECT is((SELECT last_fire_at = date_trunc('minute', now()) AND last_run_id = (SELECT run_id FROM pgflow.runs WHERE flow_slug = 'sch')
                  AND next_fire_at = date_trunc('minute', now()) + interval '1 minute' AND last_run_status = 'started'
           FROM pgflow.list_schedules() WHERE schedule_id = pg_temp.id('minutely')), true,
          'list_schedules shows the tick fired, its run and status, and the next tick');
SELECT is((SELECT idempotency_key FROM pgflow._run_options o JOIN pgflow.runs r USING (run_id) WHERE r.flow_slug = 'sch'),
          'schedule ' || pg_temp.id('minutely') || ' at ' || to_char(date_trunc('minute', now()) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
          'the run''s idempotency key names the schedule and the tick');
SELECT is((SELECT pgflow._fire_schedules()), 0, 'the tick does not fire again');
UPDATE pgflow._schedules SET next_fire_at = date_trunc('minute', now()) WHERE schedule_id = pg_temp.id('minutely');
SELECT pgflow._fire_schedules();
SELECT is((SELECT count(*)::int FROM pgflow.runs WHERE flow_slug = 'sch'), 1,
          'even a tick fired twice (as after a crash between run and schedule) starts one run');

---------------------------------------------------------------------------------------------------
-- After downtime: catch-up and skip
---------------------------------------------------------------------------------------------------
SELECT pgflow.pause_schedule(pg_temp.id('minutely'));
INSERT INTO ids SELECT 'catchup', pgflow.schedule_flow('sch', '* * * * *', '{"c": 1}', catch_up => true);
INSERT INTO ids SELECT 'skip', pgflow.schedule_flow('sch', '* * * * *', '{"s": 1}');
UPDATE pgflow._schedules SET next_fire_at = date_trunc('minute', now()) - interval '5 minutes'
WHERE schedule_id IN (pg_temp.id('catchup'), pg_temp.id('skip'));
SELECT pgflow._fire_schedules();
SELECT is((SELECT count(*)::int FROM pgflow.runs WHERE input = '{"c": 1}'), 6,
          'a schedule that catches up fires each of the 6 ticks it missed, once');
SELECT is((SELECT count(*)::int FROM pgflow.runs WHERE input = '{"s": 1}'), 0,
          'one that skips fires none of the ticks later than pgflow.schedule_grace (60 s)');
SELECT is((SELECT string_agg(to_char(next_fire_at - date_trunc('minute', now()), 'MI:SS'), ',' ORDER BY schedule_id)
           FROM pgflow._schedules WHERE schedule_id IN (pg_temp.id('catchup'), pg_temp.id('skip'))),
          '01:00,01:00', 'both go on from their next tick after now');

---------------------------------------------------------------------------------------------------
-- List, pause, resume, unschedule
---------------------------------------------------------------------------------------------------
SELECT is((SELECT paused::text || ' ' || coalesce(next_fire_at::text, 'none') FROM pgflow.list_schedules()
           WHERE schedule_id = pg_temp.id('minutely')), 'true none', 'a paused schedule has no next tick');
UPDATE pgflow._schedules SET next_fire_at = date_trunc('minute', now()) WHERE schedule_id = pg_temp.id('minutely');
SELECT pgflow._fire_schedules();
SELECT is((SELECT count(*)::int FROM pgflow.runs WHERE input = '{"n": 1}'), 1, 'and fires nothing');
SELECT pgflow.resume_schedule(pg_temp.id('minutely'));
SELECT is((SELECT NOT paused AND next_fire_at = date_trunc('minute', now()) + interval '1 minute'
           FROM pgflow.list_schedules() WHERE schedule_id = pg_temp.id('minutely')), true,
          'resumed, it goes on from its next tick after now');
SELECT is((SELECT count(*)::int FROM pgflow.list_schedules()), 3, 'list_schedules lists the three schedules');
GRANT SELECT ON ids TO pgflow_t_erin;
SET LOCAL ROLE pgflow_t_erin;
SELECT throws_ok(format('SELECT pgflow.pause_schedule(%s)', pg_temp.id('skip')), '42501',
                 format('must be the owner of schedule %s to change it', pg_temp.id('skip')),
                 'another role cannot pause someone else''s schedule');
SELECT throws_ok(format('SELECT pgflow.unschedule(%s)', pg_temp.id('skip')), '42501', NULL,
                 'nor remove it');
RESET ROLE;
SELECT pgflow.unschedule(pg_temp.id('skip'));
SELECT is((SELECT count(*)::int FROM pgflow.list_schedules()), 2, 'unschedule removes one');
SELECT is((SELECT count(*)::int FROM pgflow.runs WHERE flow_slug = 'sch'), 7, 'the runs schedules started are kept');
INSERT INTO ids SELECT 'paris', pgflow.schedule_flow('sch', '0 9 * * 1-5', time_zone => 'Europe/Paris');
SELECT is((SELECT time_zone || ' ' || schedule FROM pgflow.list_schedules() WHERE schedule_id = pg_temp.id('paris')),
          'Europe/Paris 0 9 * * 1-5', 'a schedule keeps its expression and its time zone');
SELECT pgflow.delete_flow_and_data('sch');
SELECT is((SELECT count(*)::int FROM pgflow.list_schedules()), 0, 'deleting the flow removes its schedules');

SELECT * FROM finish();
ROLLBACK;
