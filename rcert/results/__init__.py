"""Result documents and their renderings: the JSON schema, terminal table, CSV, Markdown,
JUnit XML and HTML.
"""
