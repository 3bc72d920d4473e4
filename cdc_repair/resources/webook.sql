-- The demo schema (webook): authors write `articles`; readers see `published_articles`.
-- Publishing writes both; cdc-repair keeps them consistent.
CREATE DATABASE IF NOT EXISTS webook_author CHARACTER SET utf8mb4;
CREATE DATABASE IF NOT EXISTS webook_online CHARACTER SET utf8mb4;

CREATE TABLE IF NOT EXISTS webook_author.articles (
  id        BIGINT NOT NULL PRIMARY KEY,
  author_id BIGINT,
  title     VARCHAR(4096),
  content   BLOB,
  status    TINYINT,
  ctime     BIGINT,
  utime     BIGINT,
  KEY idx_utime (utime),
  KEY idx_author_id (author_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE IF NOT EXISTS webook_online.published_articles (
  id        BIGINT NOT NULL PRIMARY KEY,
  author_id BIGINT,
  title     VARCHAR(4096),
  content   BLOB,
  status    TINYINT,
  ctime     BIGINT,
  utime     BIGINT,
  KEY idx_utime (utime),
  KEY idx_author_id (author_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
