-- CKAN 2.11 database schema: pg_dump --schema-only of a freshly initialised CKAN 2.11 site
-- (shared/ckan-reference/schema-ckan211.sql), minus session settings that would leak into the loading session.
-- test/schema-fixtures.test.ts checks it stays identical to the reference.

-- Name: activity; Type: TABLE; Schema: public; Owner: -

CREATE TABLE public.activity (
    id text NOT NULL,
    "timestamp" timestamp without time zone,
    user_id text,
    object_id text,
    revision_id text,
    activity_type text,
    data text,
    permission_labels text[]
);

-- Name: activity_alembic_version; Type: TABLE; Schema: public; Owner: -

CREATE TABLE public.activity_alembic_version (
    version_num character varying(32) NOT NULL
);

-- Name: activity_detail; Type: TABLE; Schema: public; Owner: -

CREATE TABLE public.activity_detail (
    id text NOT NULL,
    activity_id text,
    object_id text,
    object_type text,
    activity_type text,
    data text
);

-- Name: alembic_version; Type: TABLE; Schema: public; Owner: -

CREATE TABLE public.alembic_version (
    version_num character varying(32) NOT NULL
);

-- Name: api_token; Type: TABLE; Schema: public; Owner: -

CREATE TABLE public.api_token (
    id text NOT NULL,
    name text,
    user_id text,
    created_at timestamp without time zone DEFAULT CURRENT_TIMESTAMP,
    last_access timestamp without time zone,
    plugin_extras jsonb
);

-- Name: dashboard; Type: TABLE; Schema: public; Owner: -

CREATE TABLE public.dashboard (
    user_id text NOT NULL,
    activity_stream_last_viewed timestamp without time zone NOT NULL,
    email_last_sent timestamp without time zone DEFAULT LOCALTIMESTAMP NOT NULL
);

-- Name: group; Type: TABLE; Schema: public; Owner: -

CREATE TABLE public."group" (
    id text NOT NULL,
    name text NOT NULL,
    title text,
    description text,
    created timestamp without time zone,
    state text,
    type text NOT NULL,
    approval_status text,
    image_url text,
    is_organization boolean DEFAULT false
);

-- Name: group_extra; Type: TABLE; Schema: public; Owner: -

CREATE TABLE public.group_extra (
    id text NOT NULL,
    group_id text,
    key text,
    value text,
    state text
);

-- Name: group_extra_revision; Type: TABLE; Schema: public; Owner: -

CREATE TABLE public.group_extra_revision (
    id text NOT NULL,
    group_id text,
    key text,
    value text,
    state text,
    revision_id text NOT NULL,
    continuity_id text,
    expired_id text,
    revision_timestamp timestamp without time zone,
    expired_timestamp timestamp without time zone,
    current boolean
);

-- Name: group_revision; Type: TABLE; Schema: public; Owner: -

CREATE TABLE public.group_revision (
    id text NOT NULL,
    name text NOT NULL,
    title text,
    description text,
    created timestamp without time zone DEFAULT CURRENT_TIMESTAMP,
    state text,
    revision_id text NOT NULL,
    continuity_id text,
    expired_id text,
    revision_timestamp timestamp without time zone,
    expired_timestamp timestamp without time zone,
    current boolean,
    type text NOT NULL,
    approval_status text,
    image_url text,
    is_organization boolean DEFAULT false
);

-- Name: member; Type: TABLE; Schema: public; Owner: -

CREATE TABLE public.member (
    id text NOT NULL,
    group_id text,
    table_id text NOT NULL,
    state text,
    table_name text NOT NULL,
    capacity text NOT NULL
);

-- Name: member_revision; Type: TABLE; Schema: public; Owner: -

CREATE TABLE public.member_revision (
    id text NOT NULL,
    table_id text NOT NULL,
    group_id text,
    state text,
    revision_id text NOT NULL,
    continuity_id text,
    expired_id text,
    revision_timestamp timestamp without time zone,
    expired_timestamp timestamp without time zone,
    current boolean,
    table_name text NOT NULL,
    capacity text NOT NULL
);

-- Name: package; Type: TABLE; Schema: public; Owner: -

CREATE TABLE public.package (
    id text NOT NULL,
    name character varying(100) NOT NULL,
    title text,
    version character varying(100),
    url text,
    notes text,
    author text,
    author_email text,
    maintainer text,
    maintainer_email text,
    state text,
    license_id text,
    type text,
    owner_org text,
    private boolean DEFAULT false,
    metadata_modified timestamp without time zone,
    creator_user_id text,
    metadata_created timestamp without time zone,
    plugin_data jsonb
);

-- Name: package_extra; Type: TABLE; Schema: public; Owner: -

CREATE TABLE public.package_extra (
    id text NOT NULL,
    key text,
    value text,
    state text,
    package_id text
);

-- Name: package_extra_revision; Type: TABLE; Schema: public; Owner: -

CREATE TABLE public.package_extra_revision (
    id text NOT NULL,
    key text,
    value text,
    revision_id text NOT NULL,
    state text,
    package_id text,
    continuity_id text,
    expired_id text,
    revision_timestamp timestamp without time zone,
    expired_timestamp timestamp without time zone,
    current boolean
);

-- Name: package_member; Type: TABLE; Schema: public; Owner: -

CREATE TABLE public.package_member (
    package_id text NOT NULL,
    user_id text NOT NULL,
    capacity text NOT NULL,
    modified timestamp without time zone NOT NULL
);

-- Name: package_relationship; Type: TABLE; Schema: public; Owner: -

CREATE TABLE public.package_relationship (
    id text NOT NULL,
    subject_package_id text,
    object_package_id text,
    type text,
    comment text,
    state text
);

-- Name: package_relationship_revision; Type: TABLE; Schema: public; Owner: -

CREATE TABLE public.package_relationship_revision (
    id text NOT NULL,
    subject_package_id text,
    object_package_id text,
    type text,
    comment text,
    revision_id text NOT NULL,
    continuity_id text,
    state text,
    expired_id text,
    revision_timestamp timestamp without time zone,
    expired_timestamp timestamp without time zone,
    current boolean
);

-- Name: package_revision; Type: TABLE; Schema: public; Owner: -

CREATE TABLE public.package_revision (
    id text NOT NULL,
    name character varying(100) NOT NULL,
    title text,
    version character varying(100),
    url text,
    notes text,
    author text,
    author_email text,
    maintainer text,
    maintainer_email text,
    revision_id text NOT NULL,
    state text,
    continuity_id text,
    license_id text,
    expired_id text,
    revision_timestamp timestamp without time zone,
    expired_timestamp timestamp without time zone,
    current boolean,
    type text,
    owner_org text,
    private boolean DEFAULT false,
    metadata_modified timestamp without time zone,
    creator_user_id text,
    metadata_created timestamp without time zone
);

-- Name: package_tag; Type: TABLE; Schema: public; Owner: -

CREATE TABLE public.package_tag (
    id text NOT NULL,
    state text,
    package_id text,
    tag_id text
);

-- Name: package_tag_revision; Type: TABLE; Schema: public; Owner: -

CREATE TABLE public.package_tag_revision (
    id text NOT NULL,
    revision_id text NOT NULL,
    state text,
    package_id text,
    tag_id text,
    continuity_id text,
    expired_id text,
    revision_timestamp timestamp without time zone,
    expired_timestamp timestamp without time zone,
    current boolean
);

-- Name: resource; Type: TABLE; Schema: public; Owner: -

CREATE TABLE public.resource (
    id text NOT NULL,
    url text NOT NULL,
    format text,
    description text,
    "position" integer,
    hash text,
    state text,
    extras text,
    name text,
    resource_type text,
    mimetype text,
    mimetype_inner text,
    size bigint,
    last_modified timestamp without time zone,
    cache_url text,
    cache_last_updated timestamp without time zone,
    created timestamp without time zone,
    url_type text,
    package_id text DEFAULT ''::text NOT NULL,
    metadata_modified timestamp without time zone
);

-- Name: resource_revision; Type: TABLE; Schema: public; Owner: -

CREATE TABLE public.resource_revision (
    id text NOT NULL,
    url text NOT NULL,
    format text,
    description text,
    "position" integer,
    revision_id text NOT NULL,
    hash text,
    state text,
    continuity_id text,
    extras text,
    expired_id text,
    revision_timestamp timestamp without time zone,
    expired_timestamp timestamp without time zone,
    current boolean,
    name text,
    resource_type text,
    mimetype text,
    mimetype_inner text,
    size bigint,
    last_modified timestamp without time zone,
    cache_url text,
    cache_last_updated timestamp without time zone,
    webstore_url text,
    webstore_last_updated timestamp without time zone,
    created timestamp without time zone,
    url_type text,
    package_id text DEFAULT ''::text NOT NULL
);

-- Name: resource_view; Type: TABLE; Schema: public; Owner: -

CREATE TABLE public.resource_view (
    id text NOT NULL,
    resource_id text,
    title text,
    description text,
    view_type text NOT NULL,
    "order" integer NOT NULL,
    config text
);

-- Name: revision; Type: TABLE; Schema: public; Owner: -

CREATE TABLE public.revision (
    id text NOT NULL,
    "timestamp" timestamp without time zone,
    author character varying(200),
    message text,
    state text,
    approved_timestamp timestamp without time zone
);

-- Name: system_info; Type: TABLE; Schema: public; Owner: -

CREATE TABLE public.system_info (
    id integer NOT NULL,
    key character varying(100) NOT NULL,
    value text,
    state text DEFAULT 'active'::text NOT NULL
);

-- Name: system_info_id_seq; Type: SEQUENCE; Schema: public; Owner: -

CREATE SEQUENCE public.system_info_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

-- Name: system_info_id_seq; Type: SEQUENCE OWNED BY; Schema: public; Owner: -

ALTER SEQUENCE public.system_info_id_seq OWNED BY public.system_info.id;

-- Name: system_info_revision; Type: TABLE; Schema: public; Owner: -

CREATE TABLE public.system_info_revision (
    id integer NOT NULL,
    key character varying(100) NOT NULL,
    value text,
    revision_id text NOT NULL,
    continuity_id integer,
    state text DEFAULT 'active'::text NOT NULL,
    expired_id text,
    revision_timestamp timestamp without time zone,
    expired_timestamp timestamp without time zone,
    current boolean
);

-- Name: tag; Type: TABLE; Schema: public; Owner: -

CREATE TABLE public.tag (
    id text NOT NULL,
    name character varying(100) NOT NULL,
    vocabulary_id character varying(100)
);

-- Name: task_status; Type: TABLE; Schema: public; Owner: -

CREATE TABLE public.task_status (
    id text NOT NULL,
    entity_id text NOT NULL,
    entity_type text NOT NULL,
    task_type text NOT NULL,
    key text NOT NULL,
    value text NOT NULL,
    state text,
    error text,
    last_updated timestamp without time zone
);

-- Name: term_translation; Type: TABLE; Schema: public; Owner: -

CREATE TABLE public.term_translation (
    term text NOT NULL,
    term_translation text NOT NULL,
    lang_code text NOT NULL
);

-- Name: tracking_raw; Type: TABLE; Schema: public; Owner: -

CREATE TABLE public.tracking_raw (
    user_key character varying(100) NOT NULL,
    url text NOT NULL,
    tracking_type character varying(10) NOT NULL,
    access_timestamp timestamp without time zone DEFAULT CURRENT_TIMESTAMP
);

-- Name: tracking_summary; Type: TABLE; Schema: public; Owner: -

CREATE TABLE public.tracking_summary (
    url text NOT NULL,
    package_id text,
    tracking_type character varying(10) NOT NULL,
    count integer NOT NULL,
    running_total integer DEFAULT 0 NOT NULL,
    recent_views integer DEFAULT 0 NOT NULL,
    tracking_date date
);

-- Name: user; Type: TABLE; Schema: public; Owner: -

CREATE TABLE public."user" (
    id text NOT NULL,
    name text NOT NULL,
    apikey text,
    created timestamp without time zone,
    about text,
    password text,
    fullname text,
    email text,
    reset_key text,
    sysadmin boolean DEFAULT false,
    activity_streams_email_notifications boolean DEFAULT false,
    state text DEFAULT 'active'::text NOT NULL,
    plugin_extras jsonb,
    image_url text,
    last_active timestamp without time zone
);

-- Name: user_following_dataset; Type: TABLE; Schema: public; Owner: -

CREATE TABLE public.user_following_dataset (
    follower_id text NOT NULL,
    object_id text NOT NULL,
    datetime timestamp without time zone NOT NULL
);

-- Name: user_following_group; Type: TABLE; Schema: public; Owner: -

CREATE TABLE public.user_following_group (
    follower_id text NOT NULL,
    object_id text NOT NULL,
    datetime timestamp without time zone NOT NULL
);

-- Name: user_following_user; Type: TABLE; Schema: public; Owner: -

CREATE TABLE public.user_following_user (
    follower_id text NOT NULL,
    object_id text NOT NULL,
    datetime timestamp without time zone NOT NULL
);

-- Name: vocabulary; Type: TABLE; Schema: public; Owner: -

CREATE TABLE public.vocabulary (
    id text NOT NULL,
    name character varying(100) NOT NULL
);

-- Name: system_info id; Type: DEFAULT; Schema: public; Owner: -

ALTER TABLE ONLY public.system_info ALTER COLUMN id SET DEFAULT nextval('public.system_info_id_seq'::regclass);

-- Name: activity_alembic_version activity_alembic_version_pkc; Type: CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.activity_alembic_version
    ADD CONSTRAINT activity_alembic_version_pkc PRIMARY KEY (version_num);

-- Name: activity_detail activity_detail_pkey; Type: CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.activity_detail
    ADD CONSTRAINT activity_detail_pkey PRIMARY KEY (id);

-- Name: activity activity_pkey; Type: CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.activity
    ADD CONSTRAINT activity_pkey PRIMARY KEY (id);

-- Name: alembic_version alembic_version_pkc; Type: CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.alembic_version
    ADD CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num);

-- Name: api_token api_token_pkey; Type: CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.api_token
    ADD CONSTRAINT api_token_pkey PRIMARY KEY (id);

-- Name: dashboard dashboard_pkey; Type: CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.dashboard
    ADD CONSTRAINT dashboard_pkey PRIMARY KEY (user_id);

-- Name: group_extra group_extra_pkey; Type: CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.group_extra
    ADD CONSTRAINT group_extra_pkey PRIMARY KEY (id);

-- Name: group_extra_revision group_extra_revision_pkey; Type: CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.group_extra_revision
    ADD CONSTRAINT group_extra_revision_pkey PRIMARY KEY (id, revision_id);

-- Name: group group_name_key; Type: CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public."group"
    ADD CONSTRAINT group_name_key UNIQUE (name);

-- Name: group group_pkey; Type: CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public."group"
    ADD CONSTRAINT group_pkey PRIMARY KEY (id);

-- Name: group_revision group_revision_pkey; Type: CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.group_revision
    ADD CONSTRAINT group_revision_pkey PRIMARY KEY (id, revision_id);

-- Name: member member_pkey; Type: CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.member
    ADD CONSTRAINT member_pkey PRIMARY KEY (id);

-- Name: member_revision member_revision_pkey; Type: CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.member_revision
    ADD CONSTRAINT member_revision_pkey PRIMARY KEY (id, revision_id);

-- Name: package_extra package_extra_pkey; Type: CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.package_extra
    ADD CONSTRAINT package_extra_pkey PRIMARY KEY (id);

-- Name: package_extra_revision package_extra_revision_pkey; Type: CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.package_extra_revision
    ADD CONSTRAINT package_extra_revision_pkey PRIMARY KEY (id, revision_id);

-- Name: package_member package_member_pkey; Type: CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.package_member
    ADD CONSTRAINT package_member_pkey PRIMARY KEY (package_id, user_id);

-- Name: package package_name_key; Type: CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.package
    ADD CONSTRAINT package_name_key UNIQUE (name);

-- Name: package package_pkey; Type: CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.package
    ADD CONSTRAINT package_pkey PRIMARY KEY (id);

-- Name: package_relationship package_relationship_pkey; Type: CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.package_relationship
    ADD CONSTRAINT package_relationship_pkey PRIMARY KEY (id);

-- Name: package_relationship_revision package_relationship_revision_pkey; Type: CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.package_relationship_revision
    ADD CONSTRAINT package_relationship_revision_pkey PRIMARY KEY (id, revision_id);

-- Name: package_revision package_revision_pkey; Type: CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.package_revision
    ADD CONSTRAINT package_revision_pkey PRIMARY KEY (id, revision_id);

-- Name: package_tag package_tag_pkey; Type: CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.package_tag
    ADD CONSTRAINT package_tag_pkey PRIMARY KEY (id);

-- Name: package_tag_revision package_tag_revision_pkey; Type: CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.package_tag_revision
    ADD CONSTRAINT package_tag_revision_pkey PRIMARY KEY (id, revision_id);

-- Name: resource resource_pkey; Type: CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.resource
    ADD CONSTRAINT resource_pkey PRIMARY KEY (id);

-- Name: resource_revision resource_revision_pkey; Type: CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.resource_revision
    ADD CONSTRAINT resource_revision_pkey PRIMARY KEY (id, revision_id);

-- Name: resource_view resource_view_pkey; Type: CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.resource_view
    ADD CONSTRAINT resource_view_pkey PRIMARY KEY (id);

-- Name: revision revision_pkey; Type: CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.revision
    ADD CONSTRAINT revision_pkey PRIMARY KEY (id);

-- Name: system_info system_info_key_key; Type: CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.system_info
    ADD CONSTRAINT system_info_key_key UNIQUE (key);

-- Name: system_info system_info_pkey; Type: CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.system_info
    ADD CONSTRAINT system_info_pkey PRIMARY KEY (id);

-- Name: system_info_revision system_info_revision_pkey; Type: CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.system_info_revision
    ADD CONSTRAINT system_info_revision_pkey PRIMARY KEY (id, revision_id);

-- Name: tag tag_name_vocabulary_id_key; Type: CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.tag
    ADD CONSTRAINT tag_name_vocabulary_id_key UNIQUE (name, vocabulary_id);

-- Name: tag tag_pkey; Type: CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.tag
    ADD CONSTRAINT tag_pkey PRIMARY KEY (id);

-- Name: task_status task_status_entity_id_task_type_key_key; Type: CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.task_status
    ADD CONSTRAINT task_status_entity_id_task_type_key_key UNIQUE (entity_id, task_type, key);

-- Name: task_status task_status_pkey; Type: CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.task_status
    ADD CONSTRAINT task_status_pkey PRIMARY KEY (id);

-- Name: user_following_dataset user_following_dataset_pkey; Type: CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.user_following_dataset
    ADD CONSTRAINT user_following_dataset_pkey PRIMARY KEY (follower_id, object_id);

-- Name: user_following_group user_following_group_pkey; Type: CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.user_following_group
    ADD CONSTRAINT user_following_group_pkey PRIMARY KEY (follower_id, object_id);

-- Name: user_following_user user_following_user_pkey; Type: CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.user_following_user
    ADD CONSTRAINT user_following_user_pkey PRIMARY KEY (follower_id, object_id);

-- Name: user user_name_key; Type: CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public."user"
    ADD CONSTRAINT user_name_key UNIQUE (name);

-- Name: user user_pkey; Type: CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public."user"
    ADD CONSTRAINT user_pkey PRIMARY KEY (id);

-- Name: vocabulary vocabulary_name_key; Type: CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.vocabulary
    ADD CONSTRAINT vocabulary_name_key UNIQUE (name);

-- Name: vocabulary vocabulary_pkey; Type: CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.vocabulary
    ADD CONSTRAINT vocabulary_pkey PRIMARY KEY (id);

-- Name: idx_activity_detail_activity_id; Type: INDEX; Schema: public; Owner: -

CREATE INDEX idx_activity_detail_activity_id ON public.activity_detail USING btree (activity_id);

-- Name: idx_activity_object_id; Type: INDEX; Schema: public; Owner: -

CREATE INDEX idx_activity_object_id ON public.activity USING btree (object_id, "timestamp");

-- Name: idx_activity_user_id; Type: INDEX; Schema: public; Owner: -

CREATE INDEX idx_activity_user_id ON public.activity USING btree (user_id, "timestamp");

-- Name: idx_extra_grp_id_pkg_id; Type: INDEX; Schema: public; Owner: -

CREATE INDEX idx_extra_grp_id_pkg_id ON public.member USING btree (group_id, table_id);

-- Name: idx_extra_id_pkg_id; Type: INDEX; Schema: public; Owner: -

CREATE INDEX idx_extra_id_pkg_id ON public.package_extra USING btree (id, package_id);

-- Name: idx_extra_pkg_id; Type: INDEX; Schema: public; Owner: -

CREATE INDEX idx_extra_pkg_id ON public.package_extra USING btree (package_id);

-- Name: idx_group_current; Type: INDEX; Schema: public; Owner: -

CREATE INDEX idx_group_current ON public.group_revision USING btree (current);

-- Name: idx_group_extra_current; Type: INDEX; Schema: public; Owner: -

CREATE INDEX idx_group_extra_current ON public.group_extra_revision USING btree (current);

-- Name: idx_group_extra_group_id; Type: INDEX; Schema: public; Owner: -

CREATE INDEX idx_group_extra_group_id ON public.group_extra USING btree (group_id);

-- Name: idx_group_extra_period; Type: INDEX; Schema: public; Owner: -

CREATE INDEX idx_group_extra_period ON public.group_extra_revision USING btree (revision_timestamp, expired_timestamp, id);

-- Name: idx_group_extra_period_group; Type: INDEX; Schema: public; Owner: -

CREATE INDEX idx_group_extra_period_group ON public.group_extra_revision USING btree (revision_timestamp, expired_timestamp, group_id);

-- Name: idx_group_id; Type: INDEX; Schema: public; Owner: -

CREATE INDEX idx_group_id ON public."group" USING btree (id);

-- Name: idx_group_name; Type: INDEX; Schema: public; Owner: -

CREATE INDEX idx_group_name ON public."group" USING btree (name);

-- Name: idx_group_period; Type: INDEX; Schema: public; Owner: -

CREATE INDEX idx_group_period ON public.group_revision USING btree (revision_timestamp, expired_timestamp, id);

-- Name: idx_group_pkg_id; Type: INDEX; Schema: public; Owner: -

CREATE INDEX idx_group_pkg_id ON public.member USING btree (table_id);

-- Name: idx_member_continuity_id; Type: INDEX; Schema: public; Owner: -

CREATE INDEX idx_member_continuity_id ON public.member_revision USING btree (continuity_id);

-- Name: idx_only_one_active_email; Type: INDEX; Schema: public; Owner: -

CREATE UNIQUE INDEX idx_only_one_active_email ON public."user" USING btree (email, state) WHERE (state = 'active'::text);

-- Name: idx_package_continuity_id; Type: INDEX; Schema: public; Owner: -

CREATE INDEX idx_package_continuity_id ON public.package_revision USING btree (continuity_id);

-- Name: idx_package_creator_user_id; Type: INDEX; Schema: public; Owner: -

CREATE INDEX idx_package_creator_user_id ON public.package USING btree (creator_user_id);

-- Name: idx_package_current; Type: INDEX; Schema: public; Owner: -

CREATE INDEX idx_package_current ON public.package_revision USING btree (current);

-- Name: idx_package_extra_continuity_id; Type: INDEX; Schema: public; Owner: -

CREATE INDEX idx_package_extra_continuity_id ON public.package_extra_revision USING btree (continuity_id);

-- Name: idx_package_extra_current; Type: INDEX; Schema: public; Owner: -

CREATE INDEX idx_package_extra_current ON public.package_extra_revision USING btree (current);

-- Name: idx_package_extra_package_id; Type: INDEX; Schema: public; Owner: -

CREATE INDEX idx_package_extra_package_id ON public.package_extra_revision USING btree (package_id, current);

-- Name: idx_package_extra_period; Type: INDEX; Schema: public; Owner: -

CREATE INDEX idx_package_extra_period ON public.package_extra_revision USING btree (revision_timestamp, expired_timestamp, id);

-- Name: idx_package_extra_period_package; Type: INDEX; Schema: public; Owner: -

CREATE INDEX idx_package_extra_period_package ON public.package_extra_revision USING btree (revision_timestamp, expired_timestamp, package_id);

-- Name: idx_package_extra_rev_id; Type: INDEX; Schema: public; Owner: -

CREATE INDEX idx_package_extra_rev_id ON public.package_extra_revision USING btree (revision_id);

-- Name: idx_package_group_current; Type: INDEX; Schema: public; Owner: -

CREATE INDEX idx_package_group_current ON public.member_revision USING btree (current);

-- Name: idx_package_group_id; Type: INDEX; Schema: public; Owner: -

CREATE INDEX idx_package_group_id ON public.member USING btree (id);

-- Name: idx_package_group_period_package_group; Type: INDEX; Schema: public; Owner: -

CREATE INDEX idx_package_group_period_package_group ON public.member_revision USING btree (revision_timestamp, expired_timestamp, table_id, group_id);

-- Name: idx_package_period; Type: INDEX; Schema: public; Owner: -

CREATE INDEX idx_package_period ON public.package_revision USING btree (revision_timestamp, expired_timestamp, id);

-- Name: idx_package_relationship_current; Type: INDEX; Schema: public; Owner: -

CREATE INDEX idx_package_relationship_current ON public.package_relationship_revision USING btree (current);

-- Name: idx_package_resource_id; Type: INDEX; Schema: public; Owner: -

CREATE INDEX idx_package_resource_id ON public.resource USING btree (id);

-- Name: idx_package_resource_package_id; Type: INDEX; Schema: public; Owner: -

CREATE INDEX idx_package_resource_package_id ON public.resource USING btree (package_id);

-- Name: idx_package_resource_rev_id; Type: INDEX; Schema: public; Owner: -

CREATE INDEX idx_package_resource_rev_id ON public.resource_revision USING btree (revision_id);

-- Name: idx_package_resource_url; Type: INDEX; Schema: public; Owner: -

CREATE INDEX idx_package_resource_url ON public.resource USING btree (url);

-- Name: idx_package_tag_continuity_id; Type: INDEX; Schema: public; Owner: -

CREATE INDEX idx_package_tag_continuity_id ON public.package_tag_revision USING btree (continuity_id);

-- Name: idx_package_tag_current; Type: INDEX; Schema: public; Owner: -

CREATE INDEX idx_package_tag_current ON public.package_tag_revision USING btree (current);

-- Name: idx_package_tag_id; Type: INDEX; Schema: public; Owner: -

CREATE INDEX idx_package_tag_id ON public.package_tag USING btree (id);

-- Name: idx_package_tag_pkg_id; Type: INDEX; Schema: public; Owner: -

CREATE INDEX idx_package_tag_pkg_id ON public.package_tag USING btree (package_id);

-- Name: idx_package_tag_pkg_id_tag_id; Type: INDEX; Schema: public; Owner: -

CREATE INDEX idx_package_tag_pkg_id_tag_id ON public.package_tag USING btree (tag_id, package_id);

-- Name: idx_package_tag_revision_id; Type: INDEX; Schema: public; Owner: -

CREATE INDEX idx_package_tag_revision_id ON public.package_tag_revision USING btree (id);

-- Name: idx_package_tag_revision_pkg_id; Type: INDEX; Schema: public; Owner: -

CREATE INDEX idx_package_tag_revision_pkg_id ON public.package_tag_revision USING btree (package_id);

-- Name: idx_package_tag_revision_pkg_id_tag_id; Type: INDEX; Schema: public; Owner: -

CREATE INDEX idx_package_tag_revision_pkg_id_tag_id ON public.package_tag_revision USING btree (tag_id, package_id);

-- Name: idx_package_tag_revision_rev_id; Type: INDEX; Schema: public; Owner: -

CREATE INDEX idx_package_tag_revision_rev_id ON public.package_tag_revision USING btree (revision_id);

-- Name: idx_package_tag_revision_tag_id; Type: INDEX; Schema: public; Owner: -

CREATE INDEX idx_package_tag_revision_tag_id ON public.package_tag_revision USING btree (tag_id);

-- Name: idx_period_package_relationship; Type: INDEX; Schema: public; Owner: -

CREATE INDEX idx_period_package_relationship ON public.package_relationship_revision USING btree (revision_timestamp, expired_timestamp, object_package_id, subject_package_id);

-- Name: idx_period_package_tag; Type: INDEX; Schema: public; Owner: -

CREATE INDEX idx_period_package_tag ON public.package_tag_revision USING btree (revision_timestamp, expired_timestamp, package_id, tag_id);

-- Name: idx_pkg_lname; Type: INDEX; Schema: public; Owner: -

CREATE INDEX idx_pkg_lname ON public.package USING btree (lower((name)::text));

-- Name: idx_pkg_revision_id; Type: INDEX; Schema: public; Owner: -

CREATE INDEX idx_pkg_revision_id ON public.package_revision USING btree (id);

-- Name: idx_pkg_revision_name; Type: INDEX; Schema: public; Owner: -

CREATE INDEX idx_pkg_revision_name ON public.package_revision USING btree (name);

-- Name: idx_pkg_revision_rev_id; Type: INDEX; Schema: public; Owner: -

CREATE INDEX idx_pkg_revision_rev_id ON public.package_revision USING btree (revision_id);

-- Name: idx_pkg_sid; Type: INDEX; Schema: public; Owner: -

CREATE INDEX idx_pkg_sid ON public.package USING btree (id, state);

-- Name: idx_pkg_slname; Type: INDEX; Schema: public; Owner: -

CREATE INDEX idx_pkg_slname ON public.package USING btree (lower((name)::text), state);

-- Name: idx_pkg_sname; Type: INDEX; Schema: public; Owner: -

CREATE INDEX idx_pkg_sname ON public.package USING btree (name, state);

-- Name: idx_pkg_stitle; Type: INDEX; Schema: public; Owner: -

CREATE INDEX idx_pkg_stitle ON public.package USING btree (title, state);

-- Name: idx_pkg_suname; Type: INDEX; Schema: public; Owner: -

CREATE INDEX idx_pkg_suname ON public.package USING btree (upper((name)::text), state);

-- Name: idx_pkg_uname; Type: INDEX; Schema: public; Owner: -

CREATE INDEX idx_pkg_uname ON public.package USING btree (upper((name)::text));

-- Name: idx_resource_continuity_id; Type: INDEX; Schema: public; Owner: -

CREATE INDEX idx_resource_continuity_id ON public.resource_revision USING btree (continuity_id);

-- Name: idx_resource_current; Type: INDEX; Schema: public; Owner: -

CREATE INDEX idx_resource_current ON public.resource_revision USING btree (current);

-- Name: idx_resource_period; Type: INDEX; Schema: public; Owner: -

CREATE INDEX idx_resource_period ON public.resource_revision USING btree (revision_timestamp, expired_timestamp, id);

-- Name: idx_rev_state; Type: INDEX; Schema: public; Owner: -

CREATE INDEX idx_rev_state ON public.revision USING btree (state);

-- Name: idx_revision_author; Type: INDEX; Schema: public; Owner: -

CREATE INDEX idx_revision_author ON public.revision USING btree (author);

-- Name: idx_tag_id; Type: INDEX; Schema: public; Owner: -

CREATE INDEX idx_tag_id ON public.tag USING btree (id);

-- Name: idx_tag_name; Type: INDEX; Schema: public; Owner: -

CREATE INDEX idx_tag_name ON public.tag USING btree (name);

-- Name: idx_user_id; Type: INDEX; Schema: public; Owner: -

CREATE INDEX idx_user_id ON public."user" USING btree (id);

-- Name: idx_user_name; Type: INDEX; Schema: public; Owner: -

CREATE INDEX idx_user_name ON public."user" USING btree (name);

-- Name: idx_user_name_index; Type: INDEX; Schema: public; Owner: -

CREATE INDEX idx_user_name_index ON public."user" USING btree ((
CASE
    WHEN ((fullname IS NULL) OR (fullname = ''::text)) THEN name
    ELSE fullname
END));

-- Name: idx_view_resource_id; Type: INDEX; Schema: public; Owner: -

CREATE INDEX idx_view_resource_id ON public.resource_view USING btree (resource_id);

-- Name: term_lang; Type: INDEX; Schema: public; Owner: -

CREATE INDEX term_lang ON public.term_translation USING btree (term, lang_code);

-- Name: tracking_raw_access_timestamp; Type: INDEX; Schema: public; Owner: -

CREATE INDEX tracking_raw_access_timestamp ON public.tracking_raw USING btree (access_timestamp);

-- Name: tracking_raw_url; Type: INDEX; Schema: public; Owner: -

CREATE INDEX tracking_raw_url ON public.tracking_raw USING btree (url);

-- Name: tracking_raw_user_key; Type: INDEX; Schema: public; Owner: -

CREATE INDEX tracking_raw_user_key ON public.tracking_raw USING btree (user_key);

-- Name: tracking_summary_date; Type: INDEX; Schema: public; Owner: -

CREATE INDEX tracking_summary_date ON public.tracking_summary USING btree (tracking_date);

-- Name: tracking_summary_package_id; Type: INDEX; Schema: public; Owner: -

CREATE INDEX tracking_summary_package_id ON public.tracking_summary USING btree (package_id);

-- Name: tracking_summary_url; Type: INDEX; Schema: public; Owner: -

CREATE INDEX tracking_summary_url ON public.tracking_summary USING btree (url);

-- Name: activity_detail activity_detail_activity_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.activity_detail
    ADD CONSTRAINT activity_detail_activity_id_fkey FOREIGN KEY (activity_id) REFERENCES public.activity(id);

-- Name: api_token api_token_user_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.api_token
    ADD CONSTRAINT api_token_user_id_fkey FOREIGN KEY (user_id) REFERENCES public."user"(id);

-- Name: dashboard dashboard_user_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.dashboard
    ADD CONSTRAINT dashboard_user_id_fkey FOREIGN KEY (user_id) REFERENCES public."user"(id) ON UPDATE CASCADE ON DELETE CASCADE;

-- Name: group_extra group_extra_group_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.group_extra
    ADD CONSTRAINT group_extra_group_id_fkey FOREIGN KEY (group_id) REFERENCES public."group"(id);

-- Name: group_extra_revision group_extra_revision_group_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.group_extra_revision
    ADD CONSTRAINT group_extra_revision_group_id_fkey FOREIGN KEY (group_id) REFERENCES public."group"(id);

-- Name: group_extra_revision group_extra_revision_revision_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.group_extra_revision
    ADD CONSTRAINT group_extra_revision_revision_id_fkey FOREIGN KEY (revision_id) REFERENCES public.revision(id);

-- Name: group_revision group_revision_revision_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.group_revision
    ADD CONSTRAINT group_revision_revision_id_fkey FOREIGN KEY (revision_id) REFERENCES public.revision(id);

-- Name: member member_group_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.member
    ADD CONSTRAINT member_group_id_fkey FOREIGN KEY (group_id) REFERENCES public."group"(id);

-- Name: member_revision member_revision_revision_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.member_revision
    ADD CONSTRAINT member_revision_revision_id_fkey FOREIGN KEY (revision_id) REFERENCES public.revision(id);

-- Name: package_extra package_extra_package_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.package_extra
    ADD CONSTRAINT package_extra_package_id_fkey FOREIGN KEY (package_id) REFERENCES public.package(id);

-- Name: package_extra_revision package_extra_revision_revision_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.package_extra_revision
    ADD CONSTRAINT package_extra_revision_revision_id_fkey FOREIGN KEY (revision_id) REFERENCES public.revision(id);

-- Name: package_member package_member_package_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.package_member
    ADD CONSTRAINT package_member_package_id_fkey FOREIGN KEY (package_id) REFERENCES public.package(id);

-- Name: package_member package_member_user_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.package_member
    ADD CONSTRAINT package_member_user_id_fkey FOREIGN KEY (user_id) REFERENCES public."user"(id);

-- Name: package_relationship package_relationship_object_package_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.package_relationship
    ADD CONSTRAINT package_relationship_object_package_id_fkey FOREIGN KEY (object_package_id) REFERENCES public.package(id);

-- Name: package_relationship_revision package_relationship_revision_continuity_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.package_relationship_revision
    ADD CONSTRAINT package_relationship_revision_continuity_id_fkey FOREIGN KEY (continuity_id) REFERENCES public.package_relationship(id);

-- Name: package_relationship_revision package_relationship_revision_object_package_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.package_relationship_revision
    ADD CONSTRAINT package_relationship_revision_object_package_id_fkey FOREIGN KEY (object_package_id) REFERENCES public.package(id);

-- Name: package_relationship_revision package_relationship_revision_revision_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.package_relationship_revision
    ADD CONSTRAINT package_relationship_revision_revision_id_fkey FOREIGN KEY (revision_id) REFERENCES public.revision(id);

-- Name: package_relationship_revision package_relationship_revision_subject_package_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.package_relationship_revision
    ADD CONSTRAINT package_relationship_revision_subject_package_id_fkey FOREIGN KEY (subject_package_id) REFERENCES public.package(id);

-- Name: package_relationship package_relationship_subject_package_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.package_relationship
    ADD CONSTRAINT package_relationship_subject_package_id_fkey FOREIGN KEY (subject_package_id) REFERENCES public.package(id);

-- Name: package_revision package_revision_revision_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.package_revision
    ADD CONSTRAINT package_revision_revision_id_fkey FOREIGN KEY (revision_id) REFERENCES public.revision(id);

-- Name: package_tag package_tag_package_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.package_tag
    ADD CONSTRAINT package_tag_package_id_fkey FOREIGN KEY (package_id) REFERENCES public.package(id);

-- Name: package_tag_revision package_tag_revision_revision_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.package_tag_revision
    ADD CONSTRAINT package_tag_revision_revision_id_fkey FOREIGN KEY (revision_id) REFERENCES public.revision(id);

-- Name: package_tag_revision package_tag_revision_tag_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.package_tag_revision
    ADD CONSTRAINT package_tag_revision_tag_id_fkey FOREIGN KEY (tag_id) REFERENCES public.tag(id);

-- Name: package_tag package_tag_tag_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.package_tag
    ADD CONSTRAINT package_tag_tag_id_fkey FOREIGN KEY (tag_id) REFERENCES public.tag(id);

-- Name: resource resource_package_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.resource
    ADD CONSTRAINT resource_package_id_fkey FOREIGN KEY (package_id) REFERENCES public.package(id);

-- Name: resource_revision resource_revision_revision_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.resource_revision
    ADD CONSTRAINT resource_revision_revision_id_fkey FOREIGN KEY (revision_id) REFERENCES public.revision(id);

-- Name: resource_view resource_view_resource_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.resource_view
    ADD CONSTRAINT resource_view_resource_id_fkey FOREIGN KEY (resource_id) REFERENCES public.resource(id) ON UPDATE CASCADE ON DELETE CASCADE;

-- Name: system_info_revision system_info_revision_continuity_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.system_info_revision
    ADD CONSTRAINT system_info_revision_continuity_id_fkey FOREIGN KEY (continuity_id) REFERENCES public.system_info(id);

-- Name: system_info_revision system_info_revision_revision_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.system_info_revision
    ADD CONSTRAINT system_info_revision_revision_id_fkey FOREIGN KEY (revision_id) REFERENCES public.revision(id);

-- Name: tag tag_vocabulary_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.tag
    ADD CONSTRAINT tag_vocabulary_id_fkey FOREIGN KEY (vocabulary_id) REFERENCES public.vocabulary(id);

-- Name: user_following_dataset user_following_dataset_follower_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.user_following_dataset
    ADD CONSTRAINT user_following_dataset_follower_id_fkey FOREIGN KEY (follower_id) REFERENCES public."user"(id) ON UPDATE CASCADE ON DELETE CASCADE;

-- Name: user_following_dataset user_following_dataset_object_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.user_following_dataset
    ADD CONSTRAINT user_following_dataset_object_id_fkey FOREIGN KEY (object_id) REFERENCES public.package(id) ON UPDATE CASCADE ON DELETE CASCADE;

-- Name: user_following_group user_following_group_group_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.user_following_group
    ADD CONSTRAINT user_following_group_group_id_fkey FOREIGN KEY (object_id) REFERENCES public."group"(id) ON UPDATE CASCADE ON DELETE CASCADE;

-- Name: user_following_group user_following_group_user_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.user_following_group
    ADD CONSTRAINT user_following_group_user_id_fkey FOREIGN KEY (follower_id) REFERENCES public."user"(id) ON UPDATE CASCADE ON DELETE CASCADE;

-- Name: user_following_user user_following_user_follower_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.user_following_user
    ADD CONSTRAINT user_following_user_follower_id_fkey FOREIGN KEY (follower_id) REFERENCES public."user"(id) ON UPDATE CASCADE ON DELETE CASCADE;

-- Name: user_following_user user_following_user_object_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.user_following_user
    ADD CONSTRAINT user_following_user_object_id_fkey FOREIGN KEY (object_id) REFERENCES public."user"(id) ON UPDATE CASCADE ON DELETE CASCADE;

