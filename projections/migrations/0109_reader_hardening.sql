-- The analysts' read-only role may read the projections and nothing else: no temporary
-- tables (written with a COMMIT; escape before 0109), no large objects (a write that
-- outlives the query, owned by the reader), no advisory locks (the projectors, rebuild
-- swaps and migrations take theirs: a reader holding one stalls them). Privileges go
-- to PUBLIC by default, so they are taken from PUBLIC; the database owner, the role the
-- projectors run as, keeps its own (an owner's privileges are its own grant).
DO $$
BEGIN
    EXECUTE format('REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC', current_database());
END
$$;

-- Functions in pg_catalog belong to the bootstrap superuser: only a superuser can take
-- EXECUTE from PUBLIC. Migrating as the (non-superuser) owner leaves this undone with a
-- WARNING; run this block as a superuser (docs/projections.md, Analyst queries).
DO $$
DECLARE
    fn regprocedure;
    owner text := (SELECT pg_get_userbyid(datdba) FROM pg_database
                   WHERE datname = current_database());
BEGIN
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        RAISE WARNING 'reader hardening: % is not a superuser, so PUBLIC keeps EXECUTE on the large-object and advisory-lock functions; run the second block of 0109_reader_hardening.sql as a superuser',
            current_user;
        RETURN;
    END IF;
    FOR fn IN
        SELECT p.oid::regprocedure FROM pg_proc p
        WHERE p.pronamespace = 'pg_catalog'::regnamespace
          AND (p.proname LIKE 'lo\_%' OR p.proname IN ('loread', 'lowrite')
               OR p.proname LIKE 'pg\_advisory%' OR p.proname LIKE 'pg\_try\_advisory%')
        ORDER BY p.oid
    LOOP
        EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', fn);
        IF fn::text LIKE 'pg\_%' THEN
            EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %I', fn, owner);
        END IF;
    END LOOP;
END
$$;
