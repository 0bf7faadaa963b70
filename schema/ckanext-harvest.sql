-- ckanext-harvest's harvest_source table (model/__init__.py, harvest_source_table), as its
-- `ckan harvester initdb` creates it. Only sites running the harvest extension have it.
-- `config` is free-form text, usually JSON, and may hold a remote site's "api_key".
CREATE TABLE public.harvest_source (
    id text NOT NULL,
    url text NOT NULL,
    title text,
    description text,
    config text,
    created timestamp without time zone,
    type text NOT NULL,
    active boolean,
    user_id text,
    publisher_id text,
    frequency text,
    next_run timestamp without time zone
);

ALTER TABLE ONLY public.harvest_source
    ADD CONSTRAINT harvest_source_pkey PRIMARY KEY (id);
