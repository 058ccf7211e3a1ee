"""The plan index's queries (pipeline.ledger.index runs them in a `SpillDB`), with why each is
shaped as it is. `committed_rows` is the stream of the scope's rows with `settled`; `listed` the
listing, in order (`seq`).
"""
# A version is a document's rows of one (size, mtime); a missing size/mtime is (0, 0), as listed.
# A page is committed when any of its rows is final; a version is retried when any row is not.
#
# Most versions are whole: one final row for each page 0..page_count-1. Those are found with one
# aggregate per version, not per page: the sum of hash(page) over its rows equals the sum over
# 0..page_count-1 (`whole_hash`) with as many rows as pages (a different set of pages matches only
# by a 64-bit hash collision). A per-page aggregate grouped 100,000,000 pages one group each and
# ran out of DuckDB's memory (at 64 and at 256 MB); grouped per version, 1,000,000 documents of
# 100 pages each plan in the same memory as of 1 page. The pages of the other versions (resumed,
# retried, doubled, document-level errors) are read again and grouped per page: their pages
# matter one by one. Each step is one aggregate or one join, so that each can spill on its own.
WHOLE = """
CREATE TABLE summaries AS
  SELECT doc_id, coalesce(doc_size, 0) AS size, coalesce(doc_mtime_ns, 0) AS mtime, count(*) AS n_rows,
         bool_and(settled) AS all_final, max(coalesce(page_count, 0)) AS page_count,
         max(coalesce(epoch_us(created_at), 0)) AS created, sum(hash(coalesce(page_index, -1)::BIGINT)) AS pages_hash
  FROM committed_rows GROUP BY ALL;
CREATE TABLE whole_hash AS
  SELECT i + 1 AS n, sum(hash(i::BIGINT)) OVER (ORDER BY i ROWS UNBOUNDED PRECEDING) AS pages_hash
  FROM range((SELECT least(max(page_count), 1000000) FROM summaries)) t(i);
CREATE TABLE versions AS
  SELECT doc_id, size, mtime, page_count AS committed, false AS duplicated, false AS retried, page_count,
         created, NULL::INTEGER[] AS pages
  FROM summaries s JOIN whole_hash w ON w.n = s.page_count AND w.pages_hash = s.pages_hash
  WHERE s.all_final AND s.n_rows = s.page_count;
CREATE TABLE others AS SELECT doc_id, size, mtime FROM summaries ANTI JOIN versions USING (doc_id, size, mtime);
DROP TABLE summaries; DROP TABLE whole_hash;
"""
OTHERS = """
CREATE TABLE pages AS
  SELECT doc_id, size, mtime, page, count(*) AS n_rows, bool_or(settled) AS final,
         bool_and(settled) AS all_final, max(page_count) AS page_count, max(created) AS created
  FROM (SELECT doc_id, coalesce(doc_size, 0) AS size, coalesce(doc_mtime_ns, 0) AS mtime,
               coalesce(page_index, -1) AS page, settled, coalesce(page_count, 0) AS page_count,
               coalesce(epoch_us(created_at), 0) AS created FROM committed_rows) r
  SEMI JOIN others USING (doc_id, size, mtime) GROUP BY doc_id, size, mtime, page;
CREATE TABLE counted AS
  SELECT doc_id, size, mtime, count(*) FILTER (WHERE final) AS committed,
         sum(n_rows) > count(*) AS duplicated, NOT bool_and(all_final) AS retried,
         max(page_count) AS page_count, max(created) AS created
  FROM pages GROUP BY ALL;
-- the pages a resumed or retried run keeps: only for versions that are not complete
CREATE TABLE kept AS
  SELECT p.doc_id, p.size, p.mtime, list(p.page ORDER BY p.page) FILTER (WHERE p.final) AS pages
  FROM pages p JOIN counted c USING (doc_id, size, mtime)
  WHERE c.committed < greatest(c.page_count, 1) OR c.retried GROUP BY ALL;
INSERT INTO versions
  SELECT doc_id, size, mtime, committed, duplicated, retried, page_count, created, pages
  FROM counted LEFT JOIN kept USING (doc_id, size, mtime);
DROP TABLE pages; DROP TABLE counted; DROP TABLE kept;
"""
# Each listed document with every version the output holds of it (one row per version, or one
# with no version), then in listing order: the join and the sort as two steps, each of which
# spills on its own (the two in one query ran out of memory under the limit).
JOIN = """
CREATE TABLE joined AS
  SELECT l.seq, l.uri, l.size, l.mtime, v.size = l.size AND v.mtime = l.mtime AS current, v.committed,
         v.page_count, v.duplicated, v.retried, v.pages
  FROM listed l LEFT JOIN versions v USING (doc_id)
"""
# Documents the listing did not name that a killed run left several versions of (the newest
# written stays; of equally new ones the last in (size, mtime) order) or a page twice.
UNLISTED_CLEANUP = """
SELECT doc_id, count(*) > 1 AS several, bool_or(duplicated) AS duplicated,
       struct_extract(max({'created': created, 'size': size, 'mtime': mtime}), 'size') AS size,
       struct_extract(max({'created': created, 'size': size, 'mtime': mtime}), 'mtime') AS mtime
FROM versions ANTI JOIN listed USING (doc_id)
GROUP BY doc_id HAVING count(*) > 1 OR bool_or(duplicated)
"""
