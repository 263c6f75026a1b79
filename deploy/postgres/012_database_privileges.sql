-- Version 12: who may connect to Kalo's database. PostgreSQL lets PUBLIC (every role of the
-- cluster) connect to a new database and create temporary tables in it; Kalo's database is
-- now reachable only by its services' roles (and by its owner, who migrates it), and no
-- service creates temporary tables, so none may.
DO $$
BEGIN
    EXECUTE format('REVOKE CONNECT, TEMPORARY ON DATABASE %I FROM PUBLIC', current_database());
    EXECUTE format(
        'GRANT CONNECT ON DATABASE %I TO kalo_gateway, kalo_assessment, kalo_ledger, kalo_liquidation,'
        ' kalo_control, kalo_audit',
        current_database()
    );
END
$$;
