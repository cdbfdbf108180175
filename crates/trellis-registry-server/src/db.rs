//! The server's database: a search index of what the static form holds, publish tokens, and
//! owners. The same SQL runs on SQLite (the embedded default) and PostgreSQL (a `postgres://`
//! URL) through sqlx's `Any` driver.
//!
//! The signed static form is the source of truth for published versions: the `versions` and
//! `plugins` tables are rebuilt from it at start ([`Db::reconcile`]), so a crash between
//! writing a version and indexing it never leaves the two disagreeing.

use std::collections::BTreeMap;

use chrono::Utc;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::{AnyPool, Row};
use trellis_registry::index::IndexEntry;

use crate::ServerError;

/// What a token may do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Token {
    pub id: String,
    pub owner: String,
    /// `publish:<name or *>`, `yank:<name or *>`, `admin`.
    pub scopes: Vec<String>,
    pub created_at: String,
    pub revoked: bool,
}

impl Token {
    /// Whether the token carries `action` (`publish`, `yank`) for `name`, or is an admin's.
    pub fn allows(&self, action: &str, name: &str) -> bool {
        self.scopes.iter().any(|s| {
            s == "admin"
                || s.strip_prefix(action)
                    .and_then(|rest| rest.strip_prefix(':'))
                    .is_some_and(|pattern| pattern == "*" || pattern == name)
        })
    }

    pub fn is_admin(&self) -> bool {
        self.scopes.iter().any(|s| s == "admin")
    }
}

/// A search hit: the newest non-yanked version of a plugin.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub name: String,
    pub version: String,
    pub description: String,
    pub trust: String,
    pub categories: Vec<String>,
    pub keywords: Vec<String>,
    pub owners: Vec<String>,
    pub updated_at: String,
}

#[derive(Clone)]
pub struct Db {
    pool: AnyPool,
}

fn hash_token(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn db_err(e: sqlx::Error) -> ServerError {
    ServerError::Database(e.to_string())
}

impl Db {
    /// Connects to `url` (`sqlite://…` or `postgres://…`) and creates the tables if needed.
    pub async fn connect(url: &str) -> Result<Db, ServerError> {
        sqlx::any::install_default_drivers();
        let pool = sqlx::any::AnyPoolOptions::new()
            .max_connections(if url.starts_with("sqlite:") { 1 } else { 10 })
            .connect(url)
            .await
            .map_err(|e| ServerError::Database(format!("cannot open {url}: {e}")))?;
        let db = Db { pool };
        db.create_schema().await?;
        Ok(db)
    }

    async fn create_schema(&self) -> Result<(), ServerError> {
        for statement in [
            "CREATE TABLE IF NOT EXISTS versions (
                name TEXT NOT NULL, version TEXT NOT NULL, sha256 TEXT NOT NULL,
                yanked INTEGER NOT NULL, published_at TEXT NOT NULL, entry TEXT NOT NULL,
                PRIMARY KEY (name, version))",
            "CREATE TABLE IF NOT EXISTS plugins (
                name TEXT PRIMARY KEY, version TEXT NOT NULL, description TEXT NOT NULL,
                keywords TEXT NOT NULL, categories TEXT NOT NULL, trust TEXT NOT NULL,
                search TEXT NOT NULL, updated_at TEXT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS owners (
                name TEXT NOT NULL, principal TEXT NOT NULL, PRIMARY KEY (name, principal))",
            "CREATE TABLE IF NOT EXISTS tokens (
                id TEXT PRIMARY KEY, hash TEXT NOT NULL UNIQUE, owner TEXT NOT NULL,
                scopes TEXT NOT NULL, created_at TEXT NOT NULL, revoked_at TEXT)",
        ] {
            sqlx::query(statement)
                .execute(&self.pool)
                .await
                .map_err(db_err)?;
        }
        Ok(())
    }

    /// Rebuilds the search index from the static form's index files (`name → versions`).
    pub async fn reconcile(
        &self,
        indexes: &BTreeMap<String, Vec<IndexEntry>>,
    ) -> Result<(), ServerError> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        sqlx::query("DELETE FROM versions")
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        sqlx::query("DELETE FROM plugins")
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        for entries in indexes.values() {
            for entry in entries {
                insert_version(&mut tx, entry).await?;
            }
            if let Some(first) = entries.first() {
                refresh_plugin(&mut tx, &first.name, entries).await?;
                if let Some(owner) = first.signer.as_ref().and_then(|s| s.principal.clone()) {
                    sqlx::query(
                        "INSERT INTO owners (name, principal) VALUES ($1, $2)
                         ON CONFLICT (name, principal) DO NOTHING",
                    )
                    .bind(first.name.clone())
                    .bind(owner)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
                }
            }
        }
        tx.commit().await.map_err(db_err)
    }

    /// Records the versions of one plugin after a publish or a yank.
    pub async fn index_plugin(&self, entries: &[IndexEntry]) -> Result<(), ServerError> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        sqlx::query("DELETE FROM versions WHERE name = $1")
            .bind(first.name.clone())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        for entry in entries {
            insert_version(&mut tx, entry).await?;
        }
        refresh_plugin(&mut tx, &first.name, entries).await?;
        tx.commit().await.map_err(db_err)
    }

    /// Plugins whose name, description or keywords contain every word of `query`.
    pub async fn search(
        &self,
        query: &str,
        category: Option<&str>,
        min_trust: Option<trellis_trust::TrustLevel>,
    ) -> Result<Vec<Summary>, ServerError> {
        let rows = sqlx::query(
            "SELECT name, version, description, trust, categories, keywords, search, updated_at
             FROM plugins ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        let words: Vec<String> = query.split_whitespace().map(str::to_lowercase).collect();
        let mut out = Vec::new();
        for row in rows {
            let search: String = row.try_get("search").map_err(db_err)?;
            if !words.iter().all(|w| search.contains(w.as_str())) {
                continue;
            }
            let summary = self.summary_from(&row).await?;
            if category.is_some_and(|c| !summary.categories.iter().any(|x| x == c)) {
                continue;
            }
            if let Some(min) = min_trust
                && trellis_trust::TrustLevel::parse(&summary.trust).is_none_or(|t| t < min)
            {
                continue;
            }
            out.push(summary);
        }
        Ok(out)
    }

    async fn summary_from(&self, row: &sqlx::any::AnyRow) -> Result<Summary, ServerError> {
        let name: String = row.try_get("name").map_err(db_err)?;
        let list =
            |text: String| -> Vec<String> { serde_json::from_str(&text).unwrap_or_default() };
        Ok(Summary {
            owners: self.owners(&name).await?,
            version: row.try_get("version").map_err(db_err)?,
            description: row.try_get("description").map_err(db_err)?,
            trust: row.try_get("trust").map_err(db_err)?,
            categories: list(row.try_get("categories").map_err(db_err)?),
            keywords: list(row.try_get("keywords").map_err(db_err)?),
            updated_at: row.try_get("updated_at").map_err(db_err)?,
            name,
        })
    }

    /// Categories with the number of plugins in each.
    pub async fn categories(&self) -> Result<BTreeMap<String, u64>, ServerError> {
        let mut counts = BTreeMap::new();
        for s in self.search("", None, None).await? {
            for c in s.categories {
                *counts.entry(c).or_insert(0) += 1;
            }
        }
        Ok(counts)
    }

    /// Every version of `name`, oldest first.
    pub async fn versions(&self, name: &str) -> Result<Vec<IndexEntry>, ServerError> {
        let rows = sqlx::query("SELECT entry FROM versions WHERE name = $1")
            .bind(name.to_owned())
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        let mut entries = Vec::new();
        for row in rows {
            let text: String = row.try_get("entry").map_err(db_err)?;
            let entry: IndexEntry = serde_json::from_str(&text)
                .map_err(|e| ServerError::Database(format!("a stored entry of {name}: {e}")))?;
            entries.push(entry);
        }
        entries.sort_by(|a, b| a.version.cmp(&b.version));
        Ok(entries)
    }

    pub async fn plugin(&self, name: &str) -> Result<Option<Summary>, ServerError> {
        let row = sqlx::query(
            "SELECT name, version, description, trust, categories, keywords, search, updated_at
             FROM plugins WHERE name = $1",
        )
        .bind(name.to_owned())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        match row {
            Some(row) => Ok(Some(self.summary_from(&row).await?)),
            None => Ok(None),
        }
    }

    pub async fn owners(&self, name: &str) -> Result<Vec<String>, ServerError> {
        let rows = sqlx::query("SELECT principal FROM owners WHERE name = $1 ORDER BY principal")
            .bind(name.to_owned())
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.iter()
            .map(|r| r.try_get::<String, _>("principal").map_err(db_err))
            .collect()
    }

    pub async fn add_owner(&self, name: &str, principal: &str) -> Result<(), ServerError> {
        sqlx::query(
            "INSERT INTO owners (name, principal) VALUES ($1, $2)
             ON CONFLICT (name, principal) DO NOTHING",
        )
        .bind(name.to_owned())
        .bind(principal.to_owned())
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    /// Creates a token and returns it with its secret, which is shown once and stored only
    /// as a hash.
    pub async fn create_token(
        &self,
        owner: &str,
        scopes: &[String],
    ) -> Result<(Token, String), ServerError> {
        for scope in scopes {
            let ok = scope == "admin"
                || ["publish:", "yank:"]
                    .iter()
                    .any(|p| scope.strip_prefix(p).is_some_and(|rest| !rest.is_empty()));
            if !ok {
                return Err(ServerError::BadRequest(format!(
                    "scope `{scope}` is not one of publish:NAME, publish:*, yank:NAME, yank:*, admin"
                )));
            }
        }
        let secret = format!("trl_{}", hex::encode(rand::random::<[u8; 24]>()));
        let id = hex::encode(rand::random::<[u8; 6]>());
        let created_at = Utc::now().to_rfc3339();
        sqlx::query(
            "INSERT INTO tokens (id, hash, owner, scopes, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id.clone())
        .bind(hash_token(&secret))
        .bind(owner.to_owned())
        .bind(serde_json::to_string(scopes).unwrap_or_default())
        .bind(created_at.clone())
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok((
            Token {
                id,
                owner: owner.to_owned(),
                scopes: scopes.to_vec(),
                created_at,
                revoked: false,
            },
            secret,
        ))
    }

    /// The token a secret belongs to, unless it is unknown or revoked.
    pub async fn authenticate(&self, secret: &str) -> Result<Option<Token>, ServerError> {
        let row = sqlx::query(
            "SELECT id, owner, scopes, created_at, revoked_at FROM tokens WHERE hash = $1",
        )
        .bind(hash_token(secret))
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let token = token_from(&row)?;
        Ok((!token.revoked).then_some(token))
    }

    pub async fn tokens(&self) -> Result<Vec<Token>, ServerError> {
        let rows = sqlx::query(
            "SELECT id, owner, scopes, created_at, revoked_at FROM tokens ORDER BY created_at",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter().map(token_from).collect()
    }

    /// Revokes a token; `false` when no token has that id.
    pub async fn revoke_token(&self, id: &str) -> Result<bool, ServerError> {
        let done = sqlx::query("UPDATE tokens SET revoked_at = $1 WHERE id = $2")
            .bind(Utc::now().to_rfc3339())
            .bind(id.to_owned())
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(done.rows_affected() > 0)
    }
}

fn token_from(row: &sqlx::any::AnyRow) -> Result<Token, ServerError> {
    let scopes: String = row.try_get("scopes").map_err(db_err)?;
    let revoked: Option<String> = row.try_get("revoked_at").map_err(db_err)?;
    Ok(Token {
        id: row.try_get("id").map_err(db_err)?,
        owner: row.try_get("owner").map_err(db_err)?,
        scopes: serde_json::from_str(&scopes).unwrap_or_default(),
        created_at: row.try_get("created_at").map_err(db_err)?,
        revoked: revoked.is_some(),
    })
}

async fn insert_version(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    entry: &IndexEntry,
) -> Result<(), ServerError> {
    sqlx::query(
        "INSERT INTO versions (name, version, sha256, yanked, published_at, entry)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(entry.name.clone())
    .bind(entry.version.to_string())
    .bind(entry.sha256.clone())
    .bind(i32::from(entry.yanked))
    .bind(entry.published_at.to_rfc3339())
    .bind(serde_json::to_string(entry).unwrap_or_default())
    .execute(&mut **tx)
    .await
    .map_err(db_err)?;
    Ok(())
}

/// The `plugins` row: the newest version that is not yanked (or none when all are).
async fn refresh_plugin(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    name: &str,
    entries: &[IndexEntry],
) -> Result<(), ServerError> {
    sqlx::query("DELETE FROM plugins WHERE name = $1")
        .bind(name.to_owned())
        .execute(&mut **tx)
        .await
        .map_err(db_err)?;
    let Some(newest) = entries
        .iter()
        .filter(|e| !e.yanked)
        .max_by(|a, b| a.version.cmp(&b.version))
    else {
        return Ok(());
    };
    let search = format!(
        "{} {} {}",
        newest.name,
        newest.description,
        newest.keywords.join(" ")
    )
    .to_lowercase();
    sqlx::query(
        "INSERT INTO plugins (name, version, description, keywords, categories, trust, search, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(name.to_owned())
    .bind(newest.version.to_string())
    .bind(newest.description.clone())
    .bind(serde_json::to_string(&newest.keywords).unwrap_or_default())
    .bind(serde_json::to_string(&newest.categories).unwrap_or_default())
    .bind(newest.trust.clone())
    .bind(search)
    .bind(newest.published_at.to_rfc3339())
    .execute(&mut **tx)
    .await
    .map_err(db_err)?;
    Ok(())
}
