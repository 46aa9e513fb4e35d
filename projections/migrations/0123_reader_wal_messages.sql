-- The analysts' read-only role may not write to the WAL: pg_logical_emit_message (every
-- overload) is EXECUTE to PUBLIC by default and runs in a READ ONLY transaction, writing
-- a message of any size to the WAL at once (non-transactional ones are not taken back by
-- the query's rollback; a logical-decoding consumer sees them). Nothing in tradetape
-- calls it, so it is taken from PUBLIC and granted to no one. As in 0109, only a
-- superuser can: migrating as the owner leaves a WARNING (`harden_reader` runs this file
-- as the local stack's superuser; docs/projections.md, Analyst queries).
DO $$
DECLARE
    fn regprocedure;
BEGIN
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        RAISE WARNING 'reader hardening: % is not a superuser, so PUBLIC keeps EXECUTE on pg_logical_emit_message; run 0123_reader_wal_messages.sql as a superuser',
            current_user;
        RETURN;
    END IF;
    FOR fn IN
        SELECT p.oid::regprocedure FROM pg_proc p
        WHERE p.pronamespace = 'pg_catalog'::regnamespace
          AND p.proname = 'pg_logical_emit_message'
        ORDER BY p.oid
    LOOP
        EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', fn);
    END LOOP;
END
$$;
