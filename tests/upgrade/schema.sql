-- One line per property of every object of extension pgflow_core: what a fresh install and an
-- upgraded database must agree on. Two databases' outputs are compared with diff.
WITH members AS (
    SELECT d.classid, d.objid
      FROM pg_catalog.pg_depend d
      JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid
     WHERE d.refclassid = 'pg_catalog.pg_extension'::regclass AND d.deptype = 'e'
       AND e.extname = 'pgflow_core'
), rels AS (
    SELECT c.oid, c.oid::regclass::text AS name, c.relkind, c.relacl, c.reloptions
      FROM members m JOIN pg_catalog.pg_class c ON c.oid = m.objid
     WHERE m.classid = 'pg_catalog.pg_class'::regclass
), procs AS (
    SELECT p.oid FROM members m JOIN pg_catalog.pg_proc p ON p.oid = m.objid
     WHERE m.classid = 'pg_catalog.pg_proc'::regclass
)
SELECT line FROM (
    SELECT 'member ' || pg_catalog.pg_describe_object(classid, objid, 0) FROM members
    UNION ALL
    SELECT 'relation ' || name || ' kind ' || relkind::text || ' acl ' || coalesce(relacl::text, '-')
           || ' options ' || coalesce(reloptions::text, '-') FROM rels
    UNION ALL
    -- Owners, and the privileges the extension's scripts granted (pg_dump leaves those out).
    SELECT 'owner ' || pg_catalog.pg_describe_object(m.classid, m.objid, 0) || ' '
           || coalesce((SELECT c.relowner::regrole::text FROM pg_catalog.pg_class c
                        WHERE m.classid = 'pg_catalog.pg_class'::regclass AND c.oid = m.objid),
                       (SELECT p.proowner::regrole::text FROM pg_catalog.pg_proc p
                        WHERE m.classid = 'pg_catalog.pg_proc'::regclass AND p.oid = m.objid), '-')
      FROM members m
    UNION ALL
    SELECT 'initial privileges ' || pg_catalog.pg_describe_object(i.classoid, i.objoid, i.objsubid) || ' '
           || i.privtype::text || ' ' || i.initprivs::text
      FROM pg_catalog.pg_init_privs i
      JOIN members m ON m.classid = i.classoid AND m.objid = i.objoid
    UNION ALL
    -- Columns by position among the live ones, with type, nullability and default.
    SELECT 'column ' || r.name || ' #' || row_number() OVER (PARTITION BY r.oid ORDER BY a.attnum)
           || ' ' || a.attname || ' ' || pg_catalog.format_type(a.atttypid, a.atttypmod)
           || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
           || coalesce(' default ' || pg_catalog.pg_get_expr(ad.adbin, ad.adrelid), '')
           || coalesce(' acl ' || a.attacl::text, '')
      FROM rels r JOIN pg_catalog.pg_attribute a ON a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped
      LEFT JOIN pg_catalog.pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
    UNION ALL
    SELECT 'constraint ' || r.name || ' ' || co.conname || ' ' || pg_catalog.pg_get_constraintdef(co.oid)
      FROM rels r JOIN pg_catalog.pg_constraint co ON co.conrelid = r.oid
    UNION ALL
    SELECT 'index ' || pg_catalog.pg_get_indexdef(i.indexrelid)
      FROM rels r JOIN pg_catalog.pg_index i ON i.indrelid = r.oid
    UNION ALL
    SELECT 'view ' || r.name || ' ' || pg_catalog.pg_get_viewdef(r.oid) FROM rels r WHERE r.relkind IN ('v', 'm')
    UNION ALL
    SELECT 'trigger ' || pg_catalog.pg_get_triggerdef(t.oid)
      FROM rels r JOIN pg_catalog.pg_trigger t ON t.tgrelid = r.oid AND NOT t.tgisinternal
    UNION ALL
    SELECT 'policy ' || r.name || ' ' || po.polname || ' ' || po.polcmd::text || ' '
           || coalesce(pg_catalog.pg_get_expr(po.polqual, po.polrelid), '-')
      FROM rels r JOIN pg_catalog.pg_policy po ON po.polrelid = r.oid
    UNION ALL
    SELECT 'function ' || p.oid::regprocedure::text || ' acl ' || coalesce(p.proacl::text, '-') || E'\n'
           || pg_catalog.pg_get_functiondef(p.oid)
      FROM procs pr JOIN pg_catalog.pg_proc p ON p.oid = pr.oid WHERE p.prokind IN ('f', 'p', 'w')
    UNION ALL
    SELECT 'aggregate ' || p.oid::regprocedure::text FROM procs pr JOIN pg_catalog.pg_proc p ON p.oid = pr.oid
     WHERE p.prokind = 'a'
    UNION ALL
    SELECT 'type ' || t.oid::regtype::text || ' ' || t.typtype::text || ' acl ' || coalesce(t.typacl::text, '-')
           || coalesce(' enum ' || (SELECT string_agg(enumlabel, ',' ORDER BY enumsortorder)
                                      FROM pg_catalog.pg_enum WHERE enumtypid = t.oid), '')
      FROM members m JOIN pg_catalog.pg_type t ON t.oid = m.objid
     WHERE m.classid = 'pg_catalog.pg_type'::regclass
    UNION ALL
    SELECT 'schema ' || n.nspname || ' acl ' || coalesce(n.nspacl::text, '-')
      FROM members m JOIN pg_catalog.pg_namespace n ON n.oid = m.objid
     WHERE m.classid = 'pg_catalog.pg_namespace'::regclass
    UNION ALL
    SELECT 'comment ' || pg_catalog.pg_describe_object(d.classoid, d.objoid, d.objsubid) || ' ' || d.description
      FROM members m JOIN pg_catalog.pg_description d ON d.classoid = m.classid AND d.objoid = m.objid
    UNION ALL
    SELECT 'dumped ' || c.oid::regclass::text || ' where ' || coalesce(e.extcondition[i], '')
      FROM pg_catalog.pg_extension e, generate_subscripts(e.extconfig, 1) i
      JOIN pg_catalog.pg_class c ON true
     WHERE e.extname = 'pgflow_core' AND c.oid = e.extconfig[i]
) lines(line)
ORDER BY line COLLATE "C";
