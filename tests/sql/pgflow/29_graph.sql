-- Pictures: pgflow.flow_graph and pgflow.run_graph, in Mermaid and Graphviz DOT (the graph
-- suite renders the DOT of every kind of step with Graphviz).
BEGIN;
SELECT plan(15);
\ir helpers/common.psql

SELECT pgflow.create_flow('g');
SELECT pgflow.add_step('g', 'fetch');
SELECT pgflow.add_step('g', 'split', ARRAY['fetch'], step_type => 'map');
SELECT pgflow.add_step('g', 'load', ARRAY['split'], max_attempts => 2, base_delay => 0,
                       required_input_pattern => '{"split": [1]}');
SELECT pgflow.add_step('g', 'notify', ARRAY['fetch', 'load'], forbidden_input_pattern => '{"fetch": {"quiet": "<\"yes\">"}}');
SELECT pgflow.set_sql_handler('g', 'load', 'SELECT 1 / 0');
SELECT pgflow.set_program_handler('g', 'notify', ARRAY['/bin/true']);

SELECT is(pgflow.flow_graph('g'), $$---
title: "flow g"
---
flowchart TD
    s0["fetch"]
    s1[["split<br/>map"]]
    s2[("load<br/>SQL<br/>if {#quot;split#quot;: [1]}")]
    s3{{"notify<br/>program<br/>unless {#quot;fetch#quot;: {#quot;quiet#quot;: #quot;#60;\#quot;yes\#quot;#62;#quot;}}"}}
    s0 --> s1
    s1 --> s2
    s0 --> s3
    s2 --> s3
$$, 'Mermaid: a shape per kind of step (map, SQL, program), conditions, quotes and angle brackets escaped');
SELECT is(pgflow.flow_graph('g', 'dot'), $$digraph "g" {
    label="flow g"; labelloc=t; fontname="Helvetica";
    node [shape=box, style="rounded", fontname="Helvetica"];
    edge [color="#555555"];
    s0 [label="fetch"];
    s1 [label="split\nmap", shape=box3d];
    s2 [label="load\nSQL\nif {\"split\": [1]}", shape=cylinder];
    s3 [label="notify\nprogram\nunless {\"fetch\": {\"quiet\": \"<\\\"yes\\\">\"}}", shape=hexagon];
    s0 -> s1;
    s1 -> s2;
    s0 -> s3;
    s2 -> s3;
}
$$, 'DOT: the same, with DOT''s shapes and escapes');
SELECT is(pgflow.flow_graph('g', 'mermaid'), pgflow.flow_graph('g'), 'Mermaid is the default');

-- A run: fetch completed in 1.5 s, split's three tasks in 2 min 5 s, load failed after two
-- attempts, notify never ran.
SELECT pgflow.start_flow('g', '{}', '00000000-0000-0000-0000-00000000aa01');
SELECT pg_temp.complete_step('00000000-0000-0000-0000-00000000aa01', 'fetch', '[1, 2, 3]');
SELECT pg_temp.complete_map('00000000-0000-0000-0000-00000000aa01', 'split', '[1, 2, 3]');
UPDATE pgflow.step_states SET created_at = '2026-01-01 10:00:00+00', started_at = '2026-01-01 10:00:00+00',
                              completed_at = '2026-01-01 10:00:01.5+00'
WHERE run_id = '00000000-0000-0000-0000-00000000aa01' AND step_slug = 'fetch';
UPDATE pgflow.step_states SET created_at = '2026-01-01 10:00:00+00', started_at = '2026-01-01 10:00:02+00',
                              completed_at = '2026-01-01 10:02:07+00'
WHERE run_id = '00000000-0000-0000-0000-00000000aa01' AND step_slug = 'split';
-- load's handler fails twice (division by zero), and the run with it.
SELECT pgflow.run_local_tasks();
SELECT pgflow.run_local_tasks();
SELECT is((SELECT status || ' ' || attempts_count FROM pgflow.step_tasks
           WHERE run_id = '00000000-0000-0000-0000-00000000aa01' AND step_slug = 'load'), 'failed 2',
          'the SQL step failed after two attempts');
UPDATE pgflow.step_states SET failed_at = started_at + interval '850 milliseconds'
WHERE run_id = '00000000-0000-0000-0000-00000000aa01' AND step_slug = 'load';

SELECT is(pgflow.run_graph('00000000-0000-0000-0000-00000000aa01'), $$---
title: "run 00000000-0000-0000-0000-00000000aa01 of g: failed"
---
flowchart TD
    s0["fetch<br/>completed · 1.5 s · 1 attempt"]
    class s0 completed
    s1[["split<br/>map<br/>completed · 2 min 5 s · 1 attempt · 3 tasks"]]
    class s1 completed
    s2[("load<br/>SQL<br/>if {#quot;split#quot;: [1]}<br/>failed · 850 ms · 2 attempts")]
    class s2 failed
    s3{{"notify<br/>program<br/>unless {#quot;fetch#quot;: {#quot;quiet#quot;: #quot;#60;\#quot;yes\#quot;#62;#quot;}}<br/>created"}}
    class s3 created
    s0 --> s1
    s1 --> s2
    s0 --> s3
    s2 --> s3
    classDef completed fill:#d4edda,stroke:#2e7d32
    classDef created fill:#eeeeee,stroke:#9e9e9e
    classDef failed fill:#f8d7da,stroke:#c62828
    classDef skipped fill:#ffffff,stroke:#9e9e9e,stroke-dasharray:4 3
    classDef started fill:#d0e4ff,stroke:#1565c0
$$, 'a run in Mermaid: each step''s state as a class, its duration, attempts and map tasks');
SELECT is(pgflow.run_graph('00000000-0000-0000-0000-00000000aa01', 'dot'), $$digraph "g" {
    label="run 00000000-0000-0000-0000-00000000aa01 of g: failed"; labelloc=t; fontname="Helvetica";
    node [shape=box, style="rounded", fontname="Helvetica"];
    edge [color="#555555"];
    s0 [label="fetch\ncompleted · 1.5 s · 1 attempt", style="rounded,filled", fillcolor="#d4edda", color="#2e7d32"];
    s1 [label="split\nmap\ncompleted · 2 min 5 s · 1 attempt · 3 tasks", shape=box3d, style="rounded,filled", fillcolor="#d4edda", color="#2e7d32"];
    s2 [label="load\nSQL\nif {\"split\": [1]}\nfailed · 850 ms · 2 attempts", shape=cylinder, style="rounded,filled", fillcolor="#f8d7da", color="#c62828"];
    s3 [label="notify\nprogram\nunless {\"fetch\": {\"quiet\": \"<\\\"yes\\\">\"}}\ncreated", shape=hexagon, style="rounded,filled", fillcolor="#eeeeee", color="#9e9e9e"];
    s0 -> s1;
    s1 -> s2;
    s0 -> s3;
    s2 -> s3;
}
$$, 'a run in DOT: filled by state');

-- Skipped (dashed), started (running for now - started_at), cancelled and paused runs.
SELECT pgflow.create_flow('g2');
SELECT pgflow.add_step('g2', 'a');
SELECT pgflow.add_step('g2', 'b', ARRAY['a'], required_input_pattern => '{"a": 1}');
SELECT pgflow.start_flow('g2', '{}', '00000000-0000-0000-0000-00000000aa02');
SELECT pg_temp.complete_step('00000000-0000-0000-0000-00000000aa02', 'a', '2');
SELECT ok(strpos(pgflow.run_graph('00000000-0000-0000-0000-00000000aa02', 'dot'),
                 's1 [label="b\nif {\"a\": 1}\nskipped", style="rounded,dashed", fillcolor="#ffffff", color="#9e9e9e"];') > 0,
          'a skipped step is dashed');
SELECT pgflow.start_flow('g2', '{}', '00000000-0000-0000-0000-00000000aa03');
SELECT pg_temp.start_step('00000000-0000-0000-0000-00000000aa03', 'a');
UPDATE pgflow.step_states SET created_at = now() - interval '3 hours', started_at = now() - interval '2 hours 5 minutes'
WHERE run_id = '00000000-0000-0000-0000-00000000aa03' AND step_slug = 'a';
SELECT ok(strpos(pgflow.run_graph('00000000-0000-0000-0000-00000000aa03'),
                 E's0["a<br/>started · 2 h 5 min · 1 attempt"]\n    class s0 started') > 0, 'a started step: running for so long');
SELECT pgflow.pause_run('00000000-0000-0000-0000-00000000aa03');
SELECT ok(starts_with(pgflow.run_graph('00000000-0000-0000-0000-00000000aa03'),
                      E'---\ntitle: "run 00000000-0000-0000-0000-00000000aa03 of g2: paused"'), 'a paused run says so in its title');
SELECT pgflow.cancel_run('00000000-0000-0000-0000-00000000aa03');
SELECT ok(strpos(pgflow.run_graph('00000000-0000-0000-0000-00000000aa03', 'dot'),
                 'label="run 00000000-0000-0000-0000-00000000aa03 of g2: cancelled"') > 0, 'and a cancelled one');
-- A step added after the run started is not the run's.
SELECT pgflow.add_step('g2', 'late', ARRAY['a']);
SELECT ok(strpos(pgflow.run_graph('00000000-0000-0000-0000-00000000aa02'), 'late') = 0
          AND strpos(pgflow.flow_graph('g2'), 'late') > 0, 'a step added after the run started is not in its picture');

SELECT throws_ok($$SELECT pgflow.flow_graph('nope')$$, '42704', 'flow "nope" does not exist', 'an unknown flow: 42704');
SELECT throws_ok($$SELECT pgflow.run_graph('00000000-0000-0000-0000-000000000999')$$, 'P0002',
                 'run 00000000-0000-0000-0000-000000000999 does not exist', 'an unknown run: P0002');
SELECT throws_ok($$SELECT pgflow.flow_graph('g', 'svg')$$, '22023', 'format must be ''mermaid'' or ''dot'', not ''svg''',
                 'an unknown format: 22023');
SELECT throws_ok($$SELECT pgflow.run_graph('00000000-0000-0000-0000-00000000aa01', NULL)$$, '22023',
                 'format must be ''mermaid'' or ''dot'', not NULL', 'a NULL format: 22023');

SELECT * FROM finish();
ROLLBACK;
