CREATE TABLE "document_jobs" (
	"document_id" uuid NOT NULL,
	"tenant_id" uuid NOT NULL,
	"queue" text NOT NULL,
	"job_id" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "document_jobs_document_id_job_id_pk" PRIMARY KEY("document_id","job_id")
);
--> statement-breakpoint
ALTER TABLE "documents" ADD COLUMN "redrives" integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "document_jobs" ADD CONSTRAINT "document_jobs_document_id_documents_id_fk" FOREIGN KEY ("document_id") REFERENCES "public"."documents"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "document_jobs" ADD CONSTRAINT "document_jobs_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."tenants"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "document_jobs_tenant_idx" ON "document_jobs" USING btree ("tenant_id");--> statement-breakpoint
CREATE INDEX "documents_unfinished_idx" ON "documents" USING btree ("updated_at") WHERE "documents"."status" not in ('ready', 'failed');