-- The database of the sql-shop dataset: the sql_exec verifier loads it into memory (query-only).
CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, price INTEGER, qty INTEGER);
INSERT INTO items VALUES
  (1, 'pen', 2, 40), (2, 'ink', 3, 12), (3, 'pad', 4, 25), (4, 'book', 12, 7),
  (5, 'bag', 9, 3), (6, 'clip', 1, 90), (7, 'tape', 5, 14), (8, 'glue', 6, 11),
  (9, 'lamp', 15, 2), (10, 'desk', 20, 1);
