/*
 * A stand-in for the security label provider of Azure's pgaadauth extension, for
 * tests/test_database_grants.py: PostgreSQL outside Azure has none, so SECURITY LABEL FOR
 * pgaadauth fails there. Like the stand-in for pgaadauth_create_principal_with_oid, it keeps
 * only what the bootstrap relies on: labels on roles, of the form "aadauth,oid=<id>,...".
 * Built by the test with the pgserver wheel's server headers (pg_config --includedir-server).
 */
#include "postgres.h"
#include "fmgr.h"
#include "catalog/objectaddress.h"
#include "catalog/pg_authid.h"
#include "commands/seclabel.h"

PG_MODULE_MAGIC;

void _PG_init(void);

static void
check_label(const ObjectAddress *object, const char *seclabel)
{
	if (object->classId != AuthIdRelationId)
		ereport(ERROR, (errmsg("pgaadauth labels roles only")));
	if (seclabel != NULL && strncmp(seclabel, "aadauth,oid=", 12) != 0)
		ereport(ERROR, (errmsg("\"%s\" is not a pgaadauth label", seclabel)));
}

void
_PG_init(void)
{
	register_label_provider("pgaadauth", check_label);
}
