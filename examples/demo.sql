-- A tour of the queue layer: create a queue, send, read, acknowledge, inspect.
\pset footer off
\echo '--- create a queue and send three jobs (one delayed by 60 s)'
SELECT pgmq.create('emails');
SELECT pgmq.send('emails', '{"to": "ada@example.com", "subject": "welcome"}');
SELECT * FROM pgmq.send_batch('emails', ARRAY['{"to": "bob@example.com"}', '{"to": "eve@example.com"}']::jsonb[]);
SELECT pgmq.send('emails', '{"to": "later@example.com"}', 60);

\echo '--- a worker reads up to 10 visible jobs, hiding them for 30 s'
SELECT msg_id, read_ct, message FROM pgmq.read('emails', 30, 10);

\echo '--- a second worker finds nothing: the jobs are invisible while the first works on them'
SELECT count(*) AS visible_now FROM pgmq.read('emails', 30, 10);

\echo '--- the first worker archives job 1, deletes job 2 and gives job 3 back to the queue'
SELECT pgmq.archive('emails', 1::bigint) AS archived, pgmq.delete('emails', 2::bigint) AS deleted;
SELECT msg_id, vt <= clock_timestamp() AS visible FROM pgmq.set_vt('emails', 3::bigint, 0);

\echo '--- read_with_poll waits (on its latch, no busy loop) until a job is visible'
SELECT msg_id, read_ct, message FROM pgmq.read_with_poll('emails', 30, 10, max_poll_seconds => 2);

\echo '--- pop takes a job and removes it at once'
SELECT pgmq.send('emails', '{"to": "urgent@example.com"}');
SELECT msg_id, message FROM pgmq.pop('emails');

\echo '--- queue state'
SELECT queue_name, queue_length, queue_visible_length, total_messages FROM pgmq.metrics('emails');
SELECT msg_id, message, archived_at IS NOT NULL AS archived FROM pgmq.a_emails;
SELECT queue_name, is_partitioned, is_unlogged FROM pgmq.list_queues();
