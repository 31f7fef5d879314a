//! The SQL stores' table: the documented DDL of each backend (`postgres.sql`, `sqlite.sql`,
//! written for the default table `tessera_sessions`), and the same DDL for a configured
//! `[schema.]table` name, as `migrate()` runs it.

use super::{Table, DEFAULT_TABLE};

/// The PostgreSQL DDL for the default table, as documented on `PostgresStore`.
#[cfg(feature = "postgres")]
pub(crate) const POSTGRES: &str = include_str!("postgres.sql");
/// The SQLite DDL for the default table, as documented on `SqliteStore`.
#[cfg(feature = "sqlite")]
pub(crate) const SQLITE: &str = include_str!("sqlite.sql");

/// Where an index of `table` is named and what it is created on.
#[cfg_attr(not(all(feature = "sqlite", feature = "postgres")), allow(dead_code))]
enum IndexNaming {
    /// PostgreSQL: the index lives in its table's schema and takes an unqualified name.
    InTableSchema,
    /// SQLite: the index name carries the schema (an attached database), the table does not.
    QualifiedIndex,
}

/// `ddl` (written for [`DEFAULT_TABLE`]) for `table`.
fn rename(ddl: &str, table: &Table, naming: IndexNaming) -> String {
    let (index_prefix, indexed_table) = match naming {
        IndexNaming::InTableSchema => (format!("{}_", table.name()), table.qualified()),
        IndexNaming::QualifiedIndex => (
            match table.schema() {
                Some(schema) => format!("{schema}.{}_", table.name()),
                None => format!("{}_", table.name()),
            },
            table.name().to_owned(),
        ),
    };
    ddl.replace(
        &format!("IF NOT EXISTS {DEFAULT_TABLE}_"),
        &format!("IF NOT EXISTS {index_prefix}"),
    )
    .replace(
        &format!(" ON {DEFAULT_TABLE} "),
        &format!(" ON {indexed_table} "),
    )
    .replace(
        &format!("TABLE IF NOT EXISTS {DEFAULT_TABLE} "),
        &format!("TABLE IF NOT EXISTS {} ", table.qualified()),
    )
}

/// The PostgreSQL DDL for `table`.
#[cfg(feature = "postgres")]
pub(crate) fn postgres(table: &Table) -> String {
    rename(POSTGRES, table, IndexNaming::InTableSchema)
}

/// The SQLite DDL for `table`.
#[cfg(feature = "sqlite")]
pub(crate) fn sqlite(table: &Table) -> String {
    rename(SQLITE, table, IndexNaming::QualifiedIndex)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statements(ddl: &str) -> Vec<String> {
        ddl.lines()
            .filter(|l| !l.trim_start().starts_with("--"))
            .map(|l| l.split(" --").next().unwrap_or(l).trim().to_owned())
            .filter(|l| l.starts_with("CREATE") || l.starts_with(')'))
            .collect()
    }

    #[cfg(feature = "postgres")]
    #[test]
    fn postgres_ddl_follows_the_table_name() {
        let table = Table::parse("auth.web_sessions").unwrap();
        assert_eq!(
            statements(&postgres(&table)),
            [
                "CREATE TABLE IF NOT EXISTS auth.web_sessions (",
                ");",
                "CREATE INDEX IF NOT EXISTS web_sessions_expires_at ON auth.web_sessions (expires_at);",
                "CREATE INDEX IF NOT EXISTS web_sessions_principal ON auth.web_sessions (principal, joined)",
            ]
        );
        let default = Table::parse(DEFAULT_TABLE).unwrap();
        assert_eq!(postgres(&default), POSTGRES);
    }

    #[cfg(feature = "sqlite")]
    #[test]
    fn sqlite_ddl_follows_the_table_name() {
        let table = Table::parse("aux.web_sessions").unwrap();
        assert_eq!(
            statements(&sqlite(&table)),
            [
                "CREATE TABLE IF NOT EXISTS aux.web_sessions (",
                ") WITHOUT ROWID;",
                "CREATE INDEX IF NOT EXISTS aux.web_sessions_expires_at ON web_sessions (expires_at);",
                "CREATE INDEX IF NOT EXISTS aux.web_sessions_principal ON web_sessions (principal, joined)",
            ]
        );
        let default = Table::parse(DEFAULT_TABLE).unwrap();
        assert_eq!(sqlite(&default), SQLITE);
    }
}
