-- doctor_privileges: for each (relation in public, privilege) asked, whether the current user
-- holds it; NULL when the relation does not exist. USAGE is asked of sequences.
SELECT x.relation, x.privilege,
       CASE
           WHEN to_regclass('public.' || quote_ident(x.relation)) IS NULL THEN NULL
           WHEN x.privilege = 'USAGE'
               THEN has_sequence_privilege(to_regclass('public.' || quote_ident(x.relation)), 'USAGE')
           ELSE has_table_privilege(to_regclass('public.' || quote_ident(x.relation)), x.privilege)
       END AS granted
FROM unnest($1::text[], $2::text[]) AS x (relation, privilege)
