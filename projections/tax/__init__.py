"""US tax lots: per-wallet FIFO cost basis, Form 8949 and Form 1099-DA rows.

Pure domain logic (no Kafka, no PostgreSQL): `entries` turns the log's facts into what
a wallet acquired and disposed of, `book.TaxLotBook` matches them FIFO, `holding` says
short or long term and covered or not, `forms` renders the rows a form asks for.
`projections.tax.projection` folds it into the `tax_lots` projection and
`projections.tax.cli` prints the forms. The choices and limits are in docs/projections.md
("tax_lots").
"""
