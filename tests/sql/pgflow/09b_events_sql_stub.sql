-- realtime.send implemented in LANGUAGE sql (a void SQL function returns NULL to its caller): the
-- contract only fixes the signature realtime.send(jsonb, text, text, boolean), so any
-- implementation must receive the events and nothing may fail.
BEGIN;
SELECT plan(5);
\ir helpers/common.psql

CREATE SCHEMA realtime;
CREATE TABLE realtime.sent (id bigserial PRIMARY KEY, payload jsonb, event text, topic text, private boolean);
CREATE FUNCTION realtime.send(payload jsonb, event text, topic text, private boolean) RETURNS void
LANGUAGE sql AS $$ INSERT INTO realtime.sent (payload, event, topic, private) VALUES (payload, event, topic, private) $$;

SELECT pgflow.create_flow('sq');
SELECT pgflow.add_step('sq', 'a');
SELECT pgflow.add_step('sq', 'b', ARRAY['a']);
SELECT lives_ok($$SELECT pgflow.start_flow('sq', '{"v": 1}', '00000000-0000-0000-0000-000000000b01')$$,
                'start_flow with a LANGUAGE sql realtime.send');
SELECT lives_ok($$SELECT pg_temp.complete_step('00000000-0000-0000-0000-000000000b01', 'a', '"A"')$$, 'complete_task');
SELECT lives_ok($$SELECT pg_temp.complete_step('00000000-0000-0000-0000-000000000b01', 'b', '"B"')$$, 'complete_task of the last step');
SELECT results_eq($$SELECT event, topic, private, payload ->> 'event_type' FROM realtime.sent ORDER BY id$$,
                  $$VALUES ('run:started'::text, 'pgflow:run:00000000-0000-0000-0000-000000000b01'::text, false, 'run:started'::text),
                           ('step:a:started', 'pgflow:run:00000000-0000-0000-0000-000000000b01', false, 'step:started'),
                           ('step:a:completed', 'pgflow:run:00000000-0000-0000-0000-000000000b01', false, 'step:completed'),
                           ('step:b:started', 'pgflow:run:00000000-0000-0000-0000-000000000b01', false, 'step:started'),
                           ('step:b:completed', 'pgflow:run:00000000-0000-0000-0000-000000000b01', false, 'step:completed'),
                           ('run:completed', 'pgflow:run:00000000-0000-0000-0000-000000000b01', false, 'run:completed')$$,
                  'all six events recorded in order');
SELECT results_eq($$SELECT status, output FROM pgflow.runs WHERE run_id = '00000000-0000-0000-0000-000000000b01'$$,
                  $$VALUES ('completed'::text, '{"b": "B"}'::jsonb)$$, 'the run completed');

SELECT * FROM finish();
ROLLBACK;
